# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which PCI functions hold the node's storage: mounted file systems, swap, device-mapper
(LVM) and md members, ZFS pool and btrfs file system members.

Mounts come from /proc/self/mountinfo (major:minor), swap from /proc/swaps, stacked
devices from /sys/class/block/*/slaves, ZFS members from `zpool status -P`, btrfs members
from /sys/fs/btrfs/*/devices. Each leaf block device is traced through its sysfs path to
the nearest PCI function above it (NVMe namespaces under native multipath through their
subsystem's controllers). Whatever cannot be traced is a problem: the caller refuses
rather than guess.

Network file systems (NFS, CIFS, CephFS) and iSCSI disks hold no PCI function here: the
interfaces that carry them hold addresses, which the lockout guard already refuses.
"""

from __future__ import annotations

import os
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader

PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
NVME_CONTROLLER = re.compile(r"^nvme\d+$")
# Without a block device behind them; a root on these is not on local PCI storage.
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "9p")


def parse_mountinfo(text: str) -> list[dict]:
    """[{mountpoint, dev ("8:3"), fstype, source}] from /proc/self/mountinfo."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        dash = fields.index("-")
        if dash + 2 >= len(fields):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        mounts.append({"mountpoint": mountpoint, "dev": fields[2], "fstype": fields[dash + 1],
                       "source": fields[dash + 2]})
    return mounts


def parse_swaps(text: str) -> list[str]:
    """Swap partitions (device paths) from /proc/swaps; swap files live on a mount."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[1] == "partition":
            found.append(fields[0])
    return found


def parse_zpool_status(text: str) -> dict[str, list[str]]:
    """Pool -> member device paths from `zpool status -P`."""
    pools: dict[str, list[str]] = {}
    pool = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("pool:"):
            pool = stripped.split(":", 1)[1].strip()
            pools.setdefault(pool, [])
        elif pool and stripped.startswith("/"):
            pools[pool].append(stripped.split()[0])
    return pools


class StorageMap:
    """Traces block devices below one sysfs root to PCI functions."""

    def __init__(self, reader: TreeReader, sysfs_root: str) -> None:
        self.reader = reader
        self.class_block = os.path.join(sysfs_root, "class", "block")
        self.dev_block = os.path.join(sysfs_root, "dev", "block")
        self.holders: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self.added: set[str] = set()

    def name_of_dev(self, dev: str) -> str | None:
        link = os.path.join(self.dev_block, dev)
        return os.path.basename(os.path.realpath(link)) if os.path.exists(link) else None

    def leaves(self, name: str) -> list[str]:
        """The block devices at the bottom of a stack (dm, md) - the device itself if none."""
        slaves = self.reader.listdir(os.path.join(self.class_block, name, "slaves"))
        if not slaves:
            return [name]
        return [leaf for slave in slaves for leaf in self.leaves(slave)]

    def pci_of(self, name: str) -> list[str] | None:
        """PCI functions above a leaf block device; [] when it is virtual; None when untraceable."""
        link = os.path.join(self.class_block, name)
        if not os.path.exists(link):
            return None
        real = os.path.realpath(link)
        parts = real.split(os.sep)
        found = [p for p in parts if PCI_ADDRESS.match(p)]
        if found:
            return [found[-1]]
        if "nvme-subsystem" in parts:
            # Native NVMe multipath: the namespace hangs off its subsystem; its controllers sit on PCI.
            subsystem = os.sep.join(parts[:parts.index("nvme-subsystem") + 2])
            ctrls = [c for c in self.reader.listdir(subsystem) if NVME_CONTROLLER.match(c)]
            addresses = sorted({p for c in ctrls for p in os.path.realpath(os.path.join(subsystem, c)).split(os.sep)
                                if PCI_ADDRESS.match(p)})
            return addresses or None
        if "virtual" in parts:
            # loop, zram, ram: memory or a file on another mount. A dm or md stack lands here only
            # when its members could not be listed: untraceable, not empty.
            return None if name.startswith(("dm-", "md")) else []
        # Below no PCI function at all (iSCSI sessions, ACPI platform storage): PCI passthrough cannot take it.
        return []

    def add(self, name: str, what: str) -> None:
        self.added.add(name)
        for leaf in self.leaves(name):
            addresses = self.pci_of(leaf)
            if addresses is None:
                self.problems.append("cannot trace %s (%s) to a PCI function" % (leaf, what))
                continue
            for address in addresses:
                held = self.holders.setdefault(address, [])
                if what not in held:
                    held.append(what)

    def dm_name(self, name: str) -> str | None:
        return self.reader.text(os.path.join(self.class_block, name, "dm", "name"), warn=False)


def _add_btrfs(reader: TreeReader, storage: StorageMap, sysfs_root: str, mounts: dict[str, list[str]]) -> None:
    """Every member device of every mounted btrfs file system (a RAID1 root spans several disks)."""
    if not mounts:
        return
    found: set[str] = set()
    base = os.path.join(sysfs_root, "fs", "btrfs")
    for fsid in reader.listdir(base):
        members = reader.listdir(os.path.join(base, fsid, "devices"))
        where = sorted({point for source, points in mounts.items() if source in members for point in points})
        for member in members:
            storage.add(member, "holds btrfs %s" % (", ".join(where) or fsid))
        found.update(members)
    missing = sorted(source for source in mounts if source not in found)
    if missing:
        storage.problems.append("btrfs on %s (%s) is mounted but its member devices are not listed under %s" % (
            ", ".join(missing), ", ".join(sorted(p for s in missing for p in mounts[s])), base))


def storage_holders(reader: TreeReader, sysfs_root: str, procfs_root: str,
                    zpool_status: str | None, zpool_error: str | None) -> tuple[dict[str, list[str]], list[str]]:
    """(PCI address -> what it holds, problems). zpool_status None with zpool_error: zpool could not run."""
    storage = StorageMap(reader, sysfs_root)
    mountinfo = reader.text(os.path.join(procfs_root, "self", "mountinfo"), warn=False)
    if mountinfo is None:
        return {}, ["cannot read %s: mounted file systems unknown" % os.path.join(procfs_root, "self", "mountinfo")]
    zfs_mounts: dict[str, list[str]] = {}
    btrfs_mounts: dict[str, list[str]] = {}
    for mount in parse_mountinfo(mountinfo):
        if mount["fstype"] == "zfs":
            zfs_mounts.setdefault(mount["source"].split("/")[0], []).append(mount["mountpoint"])
        elif mount["fstype"] == "btrfs":
            # btrfs reports an anonymous device number; its members are listed under /sys/fs/btrfs.
            btrfs_mounts.setdefault(os.path.basename(os.path.realpath(mount["source"])), []).append(
                mount["mountpoint"])
        elif not mount["dev"].startswith("0:"):
            name = storage.name_of_dev(mount["dev"])
            if name is None:
                storage.problems.append("cannot trace %s (block device %s, holds %s) to a PCI function" % (
                    mount["source"], mount["dev"], mount["mountpoint"]))
            else:
                storage.add(name, "holds %s" % mount["mountpoint"])
        elif mount["mountpoint"] == "/" and mount["fstype"] not in NETWORK_FS:
            storage.problems.append("/ is on %s (%s), which is no block device that can be traced" % (
                mount["fstype"], mount["source"]))
    _add_btrfs(reader, storage, sysfs_root, btrfs_mounts)
    swaps = reader.text(os.path.join(procfs_root, "swaps"), warn=False)
    for path in parse_swaps(swaps or ""):
        storage.add(os.path.basename(os.path.realpath(path)), "holds swap %s" % path)
    for name in reader.listdir(storage.class_block):
        # Stacks nothing mounts directly still hold data: local-lvm thin pools, md arrays.
        if name not in storage.added and reader.listdir(os.path.join(storage.class_block, name, "slaves")):
            label = storage.dm_name(name) or name
            storage.add(name, "holds %s (%s)" % (label, "LVM/device-mapper" if name.startswith("dm-") else "md"))
    if zpool_status is not None:
        for pool, members in sorted(parse_zpool_status(zpool_status).items()):
            where = ", ".join(sorted(zfs_mounts.get(pool, [])))
            for member in members:
                storage.add(os.path.basename(os.path.realpath(member)),
                            "holds ZFS pool %s%s" % (pool, " (%s)" % where if where else ""))
    elif zfs_mounts:
        storage.problems.append("ZFS pools %s are mounted but their disks are unknown: %s" % (
            ", ".join(sorted(zfs_mounts)), zpool_error or "zpool not found"))
    return {a: sorted(w) for a, w in sorted(storage.holders.items())}, storage.problems
