# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes hold a VFIO group open: a running VM's QEMU (on Proxmox VE `kvm -id VMID`).

The kernel lets one user open /dev/vfio/<group> at a time; taking a device back from
vfio-pci while it is open takes it from that VM. Read from /proc/<pid>/fd, once per call.
"""

from __future__ import annotations

import os


def _command(procfs_root: str, pid: str) -> str:
    try:
        with open(os.path.join(procfs_root, pid, "cmdline"), "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return pid
    return "%s (%s)" % (pid, b" ".join(argv[:3]).decode("utf-8", "replace").strip())


def vfio_users(procfs_root: str, dev_root: str = "/dev") -> dict[str, list[str]]:
    """IOMMU group -> ["PID (command line)"] of every process holding /dev/vfio/<group> open."""
    prefix = os.path.join(dev_root, "vfio") + os.sep
    users: dict[str, list[str]] = {}
    try:
        pids = sorted((p for p in os.listdir(procfs_root) if p.isdigit()), key=int)
    except OSError:
        return users
    for pid in pids:
        fd_dir = os.path.join(procfs_root, pid, "fd")
        try:
            targets = {os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
        except OSError:
            continue  # gone, or not ours to read
        for target in sorted(targets):
            group = target[len(prefix):] if target.startswith(prefix) else None
            if group and group != "vfio" and pid not in [u.split()[0] for u in users.get(group, [])]:
                users.setdefault(group, []).append(_command(procfs_root, pid))
    return users
