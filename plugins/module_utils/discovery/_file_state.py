# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state of a file on the node, as the file_state module reports it."""

from __future__ import annotations

import hashlib
import os
import stat

# Text asked for is returned whole; anything this large is not one of the small files it is meant for.
MAX_READ_BYTES = 1024 * 1024

_TYPES = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "link"))


def text_checksum(text: str) -> str:
    """The checksum file_state reports for a file holding exactly `text`."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def file_state(path: str, read: bool = False) -> dict:
    """exists, type, mode ("0644"), uid, gid, and for a regular file its sha1 checksum and,
    when `read`, its text. Symbolic links are reported, not followed. Raises OSError when
    the file exists but cannot be read, ValueError when text is asked of a file too large.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {"path": path, "exists": False}
    kind = next((name for test, name in _TYPES if test(info.st_mode)), "other")
    state = {"path": path, "exists": True, "type": kind, "mode": "%04o" % stat.S_IMODE(info.st_mode),
             "uid": info.st_uid, "gid": info.st_gid}
    if kind != "file":
        return state
    if read and info.st_size > MAX_READ_BYTES:
        raise ValueError("%s is %d bytes, more than the %d this reads" % (path, info.st_size, MAX_READ_BYTES))
    digest = hashlib.sha1()
    chunks = []
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(65536), b""):
            digest.update(chunk)
            if read:
                chunks.append(chunk)
    state["checksum"] = digest.hexdigest()
    if read:
        state["content"] = b"".join(chunks).decode("utf-8", errors="replace")
    return state


def files_state(paths: list[str], read: list[str]) -> dict[str, dict]:
    """file_state() of each path, keyed by path; ValueError naming the path for a relative or unreadable one."""
    relative = [p for p in paths + read if not os.path.isabs(p)]
    if relative:
        raise ValueError("paths must be absolute, got %s" % ", ".join(relative))
    files = {}
    for path in list(dict.fromkeys(paths + read)):
        try:
            files[path] = file_state(path, read=path in read)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ValueError("%s cannot be read: %s" % (path, reason)) from exc
    return files
