# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""VF counts that Debian's sysfsutils writes at every boot: /etc/sysfs.conf and /etc/sysfs.d/*.conf.

Read-only. How sysfsutils reads a file (its boot script, load_conffile, Debian package sysfsutils):
  sed 's/#.*$//; /^[[:space:]]*$/d; s/^[[:space:]]*\\([^=[:space:]]*\\)[[:space:]]*\\([^=[:space:]]*\\)
       [[:space:]]*=[[:space:]]*\\(.*\\)/\\1 \\2 \\3/'   (one expression, wrapped here)
  | while read f1 f2 f3: "mode ATTR = M" / "owner ATTR = U:G" change permissions; a line of two words
  (f3 empty) writes f2 to /sys/f1 - so "ATTR = VALUE" and "ATTR VALUE" both write.
That is: '#' starts a comment anywhere on a line, blank lines are skipped, words are split on whitespace.
Files: /etc/sysfs.conf, then /etc/sysfs.d/*.conf in glob (sorted) order. A line ending in CR (a file saved
with CRLF) still makes the script write, so the CR is dropped here rather than the line ignored.
"""

from __future__ import annotations

import os
import posixpath
import re
from fnmatch import fnmatchcase

# bus/pci/devices/<address>/sriov_numvfs, devices/.../<address>/sriov_numvfs
BY_ADDRESS = re.compile(r"(?:^|/)([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])/sriov_numvfs$")
SPACE = re.compile(r"[ \t\r\v\f]+")
# class/net/<interface>/device/sriov_numvfs
BY_INTERFACE = re.compile(r"^class/net/([^/]+)/device/sriov_numvfs$")
# The script writes to every path its shell glob /sys/$f1 finds (`for path in /sys/$f1`).
GLOB = re.compile(r"[*?\[]")


def parse_sysfs_conf(text: str) -> list[tuple[int, str, str]]:
    """(line number, attribute, value) of every line sysfsutils writes, as its script splits them."""
    found = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].replace("=", " = ", 1)
        # The shell splits on blanks (IFS); [[:space:]] in sed also takes CR, VT and FF.
        words = [w for w in SPACE.split(line) if w and w != "="]
        if len(words) == 2:  # three words: mode/owner lines, or a syntax error the script stops at
            found.append((number, words[0], words[1]))
    return found


def _numvfs_line(attribute: str) -> dict | None:
    """{address, interface, pattern} of an attribute that writes (or, a glob, may write) a VF count, else None.
    The path as the kernel resolves it: `//` and `/./` are one `/`."""
    path = posixpath.normpath("/" + attribute).lstrip("/")
    last = path.rsplit("/", 1)[-1]
    if not (last.lower() == "sriov_numvfs" or (GLOB.search(last) and fnmatchcase("sriov_numvfs", last))):
        return None
    # Matched loosely (any case, any prefix): a line that may set a count counts - fail closed.
    by_address = BY_ADDRESS.search(path.lower())
    by_interface = BY_INTERFACE.match(path)
    if by_address:
        return {"address": by_address.group(1), "interface": None, "pattern": None}
    if by_interface and not GLOB.search(by_interface.group(1)):
        return {"address": None, "interface": by_interface.group(1), "pattern": None}
    if GLOB.search(path):
        # A glob (class/net/enp4s0f*/device/sriov_numvfs): the PFs it reaches are decided at boot.
        return {"address": None, "interface": None, "pattern": path}
    return None


def numvfs_lines(etc_root: str) -> tuple[list[dict], str | None]:
    """([{file, line, attribute, value, address, interface}], why the list may be incomplete)."""
    etc = os.path.join(etc_root, "etc")
    found, unreadable = [], []
    names: list[str] = []
    if os.path.lexists(os.path.join(etc, "sysfs.d")):
        try:  # a directory that cannot be listed may hold a line: said, not taken for none
            names = sorted(os.listdir(os.path.join(etc, "sysfs.d")))
        except OSError as exc:
            unreadable.append("/etc/sysfs.d (%s)" % (exc.strerror or exc))
    # The shell's glob *.conf: no hidden files.
    files = ["sysfs.conf"] + ["sysfs.d/" + n for n in names if n.endswith(".conf") and not n.startswith(".")]
    for name in files:
        path = os.path.join(etc, name)
        if not os.path.lexists(path):
            continue
        try:  # not reader.text: it strips the text, and the line numbers must stay those of the file
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError as exc:
            unreadable.append("/etc/%s (%s)" % (name, exc.strerror or exc))
            continue
        for number, attribute, value in parse_sysfs_conf(text):
            entry = _numvfs_line(attribute)
            if entry:
                entry.update(file="/etc/" + name, line=number, attribute=attribute, value=value)
                found.append(entry)
    return found, ("cannot read %s" % ", ".join(unreadable)) if unreadable else None


def sets_count_of(line: dict, address: str, interfaces: set[str]) -> bool:
    """Whether a line numvfs_lines() found writes (or, a glob of another shape, may write) the count of the PF at
    `address` with these interface names."""
    if not line.get("pattern"):
        return line.get("address") == address or line.get("interface") in interfaces
    pattern = line["pattern"]
    if not pattern.startswith(("bus/pci/devices/", "class/net/")):
        return True  # devices/pci0000:00/*/...: which PFs it reaches depends on the topology - fail closed
    candidates = ["bus/pci/devices/%s/sriov_numvfs" % address] + [
        "class/net/%s/device/sriov_numvfs" % name for name in interfaces]
    # fnmatch's * also crosses "/" where the shell's does not: a glob may match more here, never less.
    return any(fnmatchcase(path, pattern) for path in candidates)
