# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GRUB drop-ins that set GRUB_CMDLINE_LINUX outright, which would drop the role's tokens.

The role's drop-in appends to GRUB_CMDLINE_LINUX. grub-mkconfig (/bin/sh, dash on Debian) sources
/etc/default/grub and then /etc/default/grub.d/*.cfg in glob order - byte order, dash's glob sort
compares with strcmp - so a later file that assigns the variable without its own value throws the
role's tokens away and the node boots without them. Read-only: the planner refuses.
"""

from __future__ import annotations

import os
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import physical_lines
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import GRUB_DROPIN
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader

GRUB_D = "/etc/default/grub.d"
# An assignment at the start of a command: `GRUB_CMDLINE_LINUX=`, `export GRUB_CMDLINE_LINUX=`, after `;`/`&&`.
_ASSIGN = re.compile(r"(?:^\s*|[;&|]\s*|\bexport\s+|\breadonly\s+)GRUB_CMDLINE_LINUX=")
_UNSET = re.compile(r"(?:^\s*|[;&|]\s*)unset\s+(?:-v\s+)?(?:\w+\s+)*GRUB_CMDLINE_LINUX\b")
# The variable's own value: $GRUB_CMDLINE_LINUX not followed by a name character, or ${GRUB_CMDLINE_LINUX...}.
_SELF = re.compile(r"\$(?:GRUB_CMDLINE_LINUX(?![A-Za-z0-9_])|\{GRUB_CMDLINE_LINUX[}:#%+=?-])")


def sources_after_dropin(path: str) -> bool:
    """Whether grub-mkconfig sources `path` after the role's drop-in (byte order, as dash sorts a glob)."""
    return os.path.basename(path).encode() > os.path.basename(GRUB_DROPIN).encode()


def cmdline_overrides(reader: TreeReader, etc_root: str) -> list[dict]:
    """Lines of other /etc/default/grub.d/*.cfg files that set or unset GRUB_CMDLINE_LINUX without keeping its
    value: {file, line, text}; an unreadable file (or directory) is one entry with line 0 and text None."""
    directory = os.path.join(etc_root, GRUB_D.lstrip("/"))
    try:
        names = sorted(os.listdir(directory)) if os.path.lexists(directory) else []
    except OSError as exc:
        reader.warn("cannot list %s: %s" % (GRUB_D, exc.strerror or exc))
        return [{"file": GRUB_D, "line": 0, "text": None}]
    found = []
    for name in names:
        shown = GRUB_D + "/" + name
        if not name.endswith(".cfg") or shown == GRUB_DROPIN or not os.path.isfile(os.path.join(directory, name)):
            continue
        # Exact: a stripped leading blank line would shift the line numbers.
        text = reader.text(os.path.join(directory, name), exact=True)
        if text is None:
            found.append({"file": shown, "line": 0, "text": None})
            continue
        for number, line in enumerate(physical_lines(text), start=1):
            code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
            if (_ASSIGN.search(code) and not _SELF.search(code)) or _UNSET.search(code):
                found.append({"file": shown, "line": number, "text": line.rstrip("\r\n")})
    return found
