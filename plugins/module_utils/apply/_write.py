# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes, removes and restores a set of files in one go, in a fixed order, for owned_files.

Order: create directories, keep exact copies, keep aside foreign files, write files (atomically: a temporary
file in the same directory, then rename), remove files, put kept files back, remove
directories that are empty. Each step compares first, so a second run changes nothing;
in check mode nothing is touched and the result says what would change.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import backup_path


class WriteError(Exception):
    """A path that cannot be handled; the message names it."""


def _owner(path: str) -> None:
    # The role writes as root; files it owns belong to root like the rest of /etc.
    if os.geteuid() == 0:
        os.chown(path, 0, 0)


def _regular(path: str) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        raise WriteError("%s exists and is not a regular file" % path)
    return True


def _text(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")


def _same(path: str, content: str, mode: int) -> bool:
    if not _regular(path):
        return False
    info = os.lstat(path)
    owner_ok = os.geteuid() != 0 or (info.st_uid, info.st_gid) == (0, 0)
    with open(path, "rb") as handle:
        return handle.read() == content.encode("utf-8") and stat.S_IMODE(info.st_mode) == mode and owner_ok


def _write(path: str, content: str, mode: int) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".vfio-proxmox-", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        _owner(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def _keep(path: str, kept: str) -> None:
    """An exact copy: bytes, mode, owner and times."""
    shutil.copy2(path, kept)
    info = os.lstat(path)
    if os.geteuid() == 0:
        os.chown(kept, info.st_uid, info.st_gid)


def apply(directories: list[str], files: list[dict], backup: list[str], remove: list[str], restore: list[dict],
          remove_empty_dirs: list[str], check: bool, copies: list[dict] | None = None) -> dict:
    """Do (or, with `check`, only report) every step; return what changed and a diff per file."""
    done: dict[str, list] = {"created_dirs": [], "copied": [], "backed_up": [], "written": [], "removed": [],
                             "restored": [], "removed_dirs": []}
    diff: list[dict] = []
    try:
        for directory in directories:
            if not os.path.isdir(directory):
                done["created_dirs"].append(directory)
                if not check:
                    os.makedirs(directory, mode=0o755)
                    os.chmod(directory, 0o755)
                    _owner(directory)
        for entry in copies or []:
            if not _regular(entry["path"]):
                raise WriteError("%s cannot be copied: it is gone" % entry["path"])
            if not os.path.lexists(entry["copy"]):
                done["copied"].append(entry["path"])
                if not check:
                    _keep(entry["path"], entry["copy"])
        for path in backup:
            kept = backup_path(path)
            if _regular(path) and not os.path.lexists(kept):
                done["backed_up"].append(path)
                if not check:
                    _keep(path, kept)
        for entry in files:
            mode = int(entry["mode"], 8)
            if _same(entry["path"], entry["content"], mode):
                continue
            before = _text(entry["path"]) if _regular(entry["path"]) else ""
            done["written"].append(entry["path"])
            diff.append({"before_header": entry["path"], "after_header": entry["path"], "before": before,
                         "after": entry["content"]})
            if not check:
                _write(entry["path"], entry["content"], mode)
        for path in remove:
            if os.path.islink(path) or _regular(path):
                done["removed"].append(path)
                diff.append({"before_header": path, "after_header": path,
                             "before": "" if os.path.islink(path) else _text(path), "after": ""})
                if not check:
                    os.unlink(path)
        for entry in restore:
            if _regular(entry["backup"]):
                done["restored"].append(entry["path"])
                diff.append({"before_header": entry["path"], "after_header": entry["path"],
                             "before": _text(entry["path"]) if _regular(entry["path"]) else "",
                             "after": _text(entry["backup"])})
                if not check:
                    os.replace(entry["backup"], entry["path"])
        for directory in remove_empty_dirs:
            if os.path.isdir(directory) and not os.listdir(directory):
                done["removed_dirs"].append(directory)
                if not check:
                    try:
                        os.rmdir(directory)
                    except OSError as exc:
                        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                            raise
    except OSError as exc:
        raise WriteError("%s: %s" % (exc.filename or "?", exc.strerror or exc)) from exc
    return dict(done, changed=any(done.values()), diff=diff)


def write_text(path: str, content: str, mode: int) -> bool:
    """One file written atomically (its directory made, 0755), unless it already holds exactly that.
    True when it was written."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if _same(path, content, mode):
        return False
    _write(path, content, mode)
    return True
