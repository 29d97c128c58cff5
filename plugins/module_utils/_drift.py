# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which owned files differ from what the role would write: the converged run's one check.

The role renders every owned file on the controller and compares it with what one
ansible.builtin.find call saw on the node (checksum, mode, owner). Only when something
differs does it run the tasks that write files, so a converged run costs one round trip
instead of one or two per file. A false "differs" only costs time: the writing tasks
then report no change.
"""

from __future__ import annotations

import hashlib


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # what find's get_checksum reports


def drift(found: list[dict], desired: dict[str, dict | None]) -> list[str]:
    """Paths whose state on the node differs from `desired` (path -> {content, mode} or None for absent)."""
    seen = {item["path"]: item for item in found}
    differs = []
    for path, want in sorted(desired.items()):
        have = seen.get(path)
        if want is None:
            if have is not None:
                differs.append(path)
        elif have is None or (have.get("checksum"), have.get("mode"), have.get("uid"), have.get("gid")) != (
                _sha1(want["content"]), want["mode"], 0, 0):
            differs.append(path)
    return differs
