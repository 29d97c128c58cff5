# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hand-made VF counts at boot outside sysfsutils: ifupdown `post-up`/`pre-up` lines and udev rules that write
sriov_numvfs - the two ways most SR-IOV guides for Proxmox VE give. Read-only: with the role's unit as well, two
tools would set a PF's count at boot, so the SR-IOV planner refuses.

Each line that writes sriov_numvfs is reported with what it names: PCI addresses in it, and interface names -
the `iface` stanza it is in (ifupdown runs post-up with $IFACE set to it) and /sys/class/net/NAME/ paths. A line
that names neither (a udev rule matching a driver) may set any PF's count.
"""

from __future__ import annotations

import os
import re

ADDRESS = re.compile(r"\b([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\b")
CLASS_NET = re.compile(r"/class/net/([^/\s\"'$]+)/")
IFACE = re.compile(r"^\s*iface\s+(\S+)")
# ifupdown starts a new stanza with these; a post-up line belongs to the last iface.
STANZA = re.compile(r"^\s*(iface|auto|allow-\S+|mapping|source|source-directory|rename)\b")


def _listed(directory: str, suffix: str) -> tuple[list[str], str | None]:
    if not os.path.lexists(directory):
        return [], None
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(suffix) and not n.startswith(".")), None
    except OSError as exc:
        return [], "%s (%s)" % (directory, exc.strerror or exc)


def _read(path: str) -> tuple[str | None, str | None]:
    try:  # the line numbers must stay those of the file: not stripped
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(), None
    except OSError as exc:
        return None, "%s (%s)" % (path, exc.strerror or exc)


def boot_numvfs_lines(etc_root: str) -> tuple[list[dict], str | None]:
    """([{file, line, text, addresses, interfaces}], why the list may be incomplete)."""
    etc = os.path.join(etc_root, "etc")
    shown: list[str] = ["/etc/network/interfaces"]
    unreadable = []
    for directory, suffix, prefix in (("network/interfaces.d", "", "/etc/network/interfaces.d/"),
                                      ("udev/rules.d", ".rules", "/etc/udev/rules.d/")):
        names, problem = _listed(os.path.join(etc, directory), suffix)
        shown += [prefix + n for n in names]
        unreadable += [problem] if problem else []
    found = []
    for name in shown:
        path = os.path.join(etc_root, name.lstrip("/"))
        if not os.path.isfile(path):
            continue
        text, problem = _read(path)
        if text is None:
            unreadable.append(problem)
            continue
        stanza = None
        for number, line in enumerate(text.split("\n"), start=1):
            code = line.strip()
            if STANZA.match(line):
                match = IFACE.match(line)
                stanza = match.group(1) if match else None
            if code.startswith("#") or "sriov_numvfs" not in code:
                continue
            interfaces = set(CLASS_NET.findall(code))
            if name.startswith("/etc/network/") and stanza and "$IFACE" in code.replace("${IFACE}", "$IFACE"):
                interfaces.add(stanza)
            found.append({"file": name, "line": number, "text": code, "addresses": sorted(set(ADDRESS.findall(
                code.lower()))), "interfaces": sorted(interfaces)})
    return found, ("cannot read %s" % ", ".join(unreadable)) if unreadable else None
