# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes hold a VFIO group open: a running VM's QEMU (on Proxmox VE `kvm -id VMID`).

The kernel lets one user open /dev/vfio/<group> at a time; taking a device back from
vfio-pci while it is open takes it from that VM. Read from /proc/<pid>/fd, once per call.
Fail closed: a /proc that cannot be listed, or a process whose descriptors cannot be read,
raises VfioUsersUnknown - an empty answer would say "nobody", and a guard would take a
device from a running VM.
"""

from __future__ import annotations

import errno
import os

# The process ended (or closed that descriptor) between listing and reading: it holds nothing.
_GONE = (errno.ENOENT, errno.ESRCH)


class VfioUsersUnknown(Exception):
    """Who holds a VFIO group open cannot be known: /proc could not be read."""


def _command(procfs_root: str, pid: str) -> str:
    try:
        with open(os.path.join(procfs_root, pid, "cmdline"), "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return pid
    return "%s (%s)" % (pid, b" ".join(argv[:3]).decode("utf-8", "replace").strip())


def _link(fd_dir: str, fd: str) -> str:
    try:
        return os.readlink(os.path.join(fd_dir, fd))
    except OSError as exc:
        if exc.errno in _GONE:
            return ""
        raise


def vfio_users(procfs_root: str, dev_root: str = "/dev") -> dict[str, list[str]]:
    """IOMMU group -> ["PID (command line)"] of every process holding /dev/vfio/<group> open."""
    prefix = os.path.join(dev_root, "vfio") + os.sep
    users: dict[str, list[str]] = {}
    try:
        pids = sorted((p for p in os.listdir(procfs_root) if p.isdigit()), key=int)
    except OSError as exc:
        raise VfioUsersUnknown("%s cannot be read (%s)" % (procfs_root, exc.strerror or exc)) from exc
    for pid in pids:
        fd_dir = os.path.join(procfs_root, pid, "fd")
        try:
            targets = {_link(fd_dir, fd) for fd in os.listdir(fd_dir)}
        except OSError as exc:
            if exc.errno in _GONE:
                continue
            raise VfioUsersUnknown("%s cannot be read (%s)" % (fd_dir, exc.strerror or exc)) from exc
        for target in sorted(targets - {""}):
            group = target[len(prefix):] if target.startswith(prefix) else None
            if group and group != "vfio" and pid not in [u.split()[0] for u in users.get(group, [])]:
                users.setdefault(group, []).append(_command(procfs_root, pid))
    return users
