# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module configuration already on the node that touches passthrough, file and line.

kmod reads every *.conf in the modprobe.d directories and joins `options` lines for one
module (the kernel then keeps the last `ids=`), so a hand-made `options vfio-pci ids=`
decides bindings next to the role's. Reported here: modprobe.d `options`, `install`,
`remove` and `alias` lines for vfio modules, every `blacklist` and `softdep` line, vfio
lines of /etc/modules, modules-load.d and the initramfs module list, and driverctl
overrides.
"""

from __future__ import annotations

import os

from ansible_collections.vfio.proxmox.plugins.module_utils._inputs import normalize_module
from ansible_collections.vfio.proxmox.plugins.module_utils._tree import TreeReader

MODPROBE_DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/lib/modprobe.d", "lib/modprobe.d")
LOAD_FILES = ("etc/modules", "etc/initramfs-tools/modules")
LOAD_DIRS = ("etc/modules-load.d", "run/modules-load.d", "usr/lib/modules-load.d")
DRIVERCTL_DIR = "etc/driverctl.d"


def _conf_files(reader: TreeReader, etc_root: str, directories) -> list[str]:
    files = []
    for directory in directories:
        base = os.path.join(etc_root, directory)
        files += [os.path.join(base, n) for n in reader.listdir(base) if n.endswith(".conf")]
    return files


def modprobe_lines(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, text, words) of each command, with comments and `\\` continuations handled."""
    found, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.split():
            found.append((start, line.strip(), line.split()))
    return found


def _relevant(words: list[str]) -> str | None:
    command = words[0]
    if command in ("blacklist", "softdep"):
        return command
    if command in ("options", "install", "remove") and len(words) > 1 and normalize_module(words[1]).startswith("vfio"):
        return command
    if command == "alias" and any("vfio" in w for w in words[1:]):
        return command
    return None


def _ids(words: list[str]) -> list[str]:
    for word in words[2:]:
        if word.startswith("ids="):
            return [i.strip().lower() for i in word[4:].split(",") if i.strip()]
    return []


def _real(path: str, etc_root: str) -> str:
    """Where a path leads inside the node's tree (an absolute link target is below etc_root too)."""
    for _hop in range(8):
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        path = os.path.normpath(os.path.join(etc_root, target.lstrip("/")) if os.path.isabs(target)
                                else os.path.join(os.path.dirname(path), target))
    return os.path.normpath(path)


def vfio_config(reader: TreeReader, etc_root: str) -> list[dict]:
    """[{file, line, text, kind, module, ids}] in file order; paths as the node sees them. A link to a file
    read already (Debian's /etc/modules-load.d/modules.conf -> ../modules) is not read twice."""
    entries = []
    read: set[str] = set()

    def shown(path: str) -> str:
        return "/" + os.path.relpath(path, etc_root)

    def first_time(path: str) -> bool:
        real = _real(path, etc_root)
        if real in read:
            return False
        read.add(real)
        return True

    for path in [p for p in _conf_files(reader, etc_root, MODPROBE_DIRS) if first_time(p)]:
        for number, line, words in modprobe_lines(reader.text(path, warn=True) or ""):
            kind = _relevant(words)
            if kind:
                entries.append({"file": shown(path), "line": number, "text": line, "kind": kind,
                                "module": normalize_module(words[1]) if len(words) > 1 else None,
                                "ids": _ids(words) if kind == "options" else []})
    load_files = [os.path.join(etc_root, f) for f in LOAD_FILES] + _conf_files(reader, etc_root, LOAD_DIRS)
    for path in load_files:
        if not os.path.isfile(path) or not first_time(path):
            continue
        for number, raw in enumerate((reader.text(path) or "").splitlines(), start=1):
            words = raw.split("#", 1)[0].split()
            if words and normalize_module(words[0]).startswith("vfio"):
                entries.append({"file": shown(path), "line": number, "text": raw.strip(), "kind": "load",
                                "module": normalize_module(words[0]), "ids": []})
    base = os.path.join(etc_root, DRIVERCTL_DIR)
    for name in reader.listdir(base):
        if name.startswith("pci-"):
            driver = reader.text(os.path.join(base, name)) or ""
            entries.append({"file": shown(os.path.join(base, name)), "line": 1, "text": driver, "kind": "driverctl",
                            "module": normalize_module(driver) if driver else None, "address": name[4:], "ids": []})
    return entries
