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
import re


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # what find's get_checksum reports


def drift(found: list[dict], desired: list[dict], read: dict[str, str | None] | None = None) -> list[str]:
    """Paths whose state on the node differs from `desired`.

    desired: [{path, content (None: must not exist), mode, manage (default true)}]. found: find's `files`
    (checksum, mode, uid, gid). read: content already read from the node (None: missing),
    compared as text instead - for files outside the directories find looked in.
    """
    seen = {item["path"]: item for item in found}
    read = read or {}
    differs = []
    for want in desired:
        if not want.get("manage", True):
            continue
        path, content = want["path"], want["content"]
        if path in read:
            same = read[path] == content
        elif content is None:
            same = path not in seen
        else:
            have = seen.get(path) or {}
            same = (have.get("checksum"), have.get("mode"), have.get("uid"), have.get("gid")) == (
                _sha1(content), want["mode"], 0, 0)
        if not same:
            differs.append(path)
    return sorted(differs)


def block_pattern(marker: str, lines: list[str]) -> str:
    """A regex for ansible.builtin.find's `contains` matching exactly blockinfile's block."""
    block = [marker.replace("{mark}", "BEGIN"), *lines, marker.replace("{mark}", "END")]
    return "(?m)^" + r"\n".join(re.escape(line) for line in block) + "$"
