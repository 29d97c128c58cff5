# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tolerant readers for sysfs/procfs-like trees.

A missing file, a dangling link or an unreadable attribute never raises: the
reader returns None and records a warning naming the file, so discovery on a
malformed tree degrades field by field instead of failing.
"""

from __future__ import annotations

import errno
import os


class TreeReader:
    """Reads files and links below a root, collecting warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def text(self, path: str, warn: bool = True, exact: bool = False) -> str | None:
        """Return the stripped content of a file, or None. `exact`: every character as it is (no stripping, no
        newline translation) - for files reported by line number, which a stripped leading blank line would shift
        (and adoption would edit the wrong line)."""
        try:
            with open(path, encoding="utf-8", errors="replace", newline="" if exact else None) as handle:
                return handle.read() if exact else handle.read().strip()
        except OSError as exc:
            # EINVAL is how sysfs answers "no value right now" (speed of a link that is down).
            if warn and exc.errno != errno.EINVAL:
                self.warn("cannot read %s: %s" % (path, exc.strerror or exc))
            return None

    def lines(self, path: str, warn: bool = True) -> list[str] | None:
        content = self.text(path, warn=warn)
        return None if content is None else content.splitlines()

    def link_name(self, path: str, warn: bool = True) -> str | None:
        """Return the basename of a symlink's target, or None.

        Only the basename is used, so a fake tree answers like the real one.
        A dangling link yields None and a warning.
        """
        if not os.path.islink(path):
            return None
        target = os.readlink(path)
        if not os.path.exists(path):
            if warn:
                self.warn("dangling link %s -> %s" % (path, target))
            return None
        return os.path.basename(target.rstrip("/"))

    def listdir(self, path: str, warn: bool = False) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            if warn:
                self.warn("cannot list %s: %s" % (path, exc.strerror or exc))
            return []

    def hex_id(self, path: str, width: int) -> str | None:
        """Read a sysfs hex attribute ("0x8086") as lowercase digits without 0x."""
        raw = self.text(path)
        if raw is None:
            return None
        try:
            return "%0*x" % (width, int(raw, 16))
        except ValueError:
            self.warn("unexpected value %r in %s" % (raw, path))
            return None

    def integer(self, path: str, warn: bool = True) -> int | None:
        raw = self.text(path, warn=warn)
        if raw is None:
            return None
        try:
            return int(raw, 0)
        except ValueError:
            if warn:
                self.warn("unexpected value %r in %s" % (raw, path))
            return None
