# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which owned files differ from what the role would write: the converged run's one check.

The role renders every owned file on the controller and compares it with what one
file_state call saw on the node (checksum, mode, owner; the text of files it read). Only
when something differs does it run the tasks that write files, so a converged run costs
one round trip instead of one or two per file. A false "differs" only costs time: the
writing tasks then report no change.
"""

from __future__ import annotations

import hashlib


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # what file_state reports


def _holds_block(text: str | None, marker: str, lines: list[str]) -> bool:
    """Whether `text` holds, on whole lines, exactly the block blockinfile writes."""
    if text is None:
        return False
    block = [marker.replace("{mark}", "BEGIN"), *lines, marker.replace("{mark}", "END")]
    return "\n" + "\n".join(block) + "\n" in "\n" + text.rstrip("\n") + "\n"


def drift(files: dict[str, dict], desired: list[dict]) -> list[str]:
    """Paths whose state on the node differs from `desired`.

    files: file_state's `files` (path -> exists, type, checksum, mode, uid, gid, content).
    desired: one entry per path, either {path, content (None: must not exist), mode,
    manage (default true)}, owned whole, or {path, marker, block (lines)}, a marked block
    inside a file the role does not own, whose text file_state must have read.
    """
    differs = []
    for want in desired:
        if not want.get("manage", True):
            continue
        path = want["path"]
        have = files.get(path) or {"exists": False}
        if "block" in want:
            same = _holds_block(have.get("content"), want["marker"], want["block"])
        elif want["content"] is None:
            same = not have["exists"]
        else:
            same = (have.get("type"), have.get("checksum"), have.get("mode"), have.get("uid"), have.get("gid")) == (
                "file", _sha1(want["content"]), want["mode"], 0, 0)
        if not same:
            differs.append(path)
    return sorted(differs)
