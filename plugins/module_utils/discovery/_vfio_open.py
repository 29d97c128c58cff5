# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open a device through VFIO the way QEMU does, and read its IDs from its PCI config space.

The sequence of include/uapi/linux/vfio.h and Documentation/driver-api/vfio.rst:
open /dev/vfio/vfio (a container), check the API version and the type-1 IOMMU extension,
open /dev/vfio/<group>, check that the group is viable, add it to the container, set the
IOMMU type, get the device's file descriptor by its address, ask for the config region and
read the vendor and device IDs there. Passing this is what "ready for a VM" means.

The kernel calls go through `Vfio`, so unit tests can hand in a stand-in; the real one
uses os and fcntl only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vfio_users import VfioUsersUnknown, vfio_users

# _IO(VFIO_TYPE, VFIO_BASE + n) with VFIO_TYPE ';' and VFIO_BASE 100 (include/uapi/linux/vfio.h).
VFIO_GET_API_VERSION = 0x3B64
VFIO_CHECK_EXTENSION = 0x3B65
VFIO_SET_IOMMU = 0x3B66
VFIO_GROUP_GET_STATUS = 0x3B67
VFIO_GROUP_SET_CONTAINER = 0x3B68
VFIO_GROUP_UNSET_CONTAINER = 0x3B69
VFIO_GROUP_GET_DEVICE_FD = 0x3B6A
VFIO_DEVICE_GET_REGION_INFO = 0x3B6C
VFIO_API_VERSION = 0
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3
VFIO_GROUP_FLAGS_VIABLE = 1
VFIO_PCI_CONFIG_REGION_INDEX = 7
GROUP_STATUS = "II"  # argsz, flags
REGION_INFO = "IIIIQQ"  # argsz, flags, index, cap_offset, size, offset


class Vfio:
    """The few kernel calls the check needs."""

    def open(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg=0):
        """An int argument is passed as is; a bytearray is passed by address and filled in."""
        if isinstance(arg, bytearray):
            return fcntl.ioctl(fd, request, arg, True)
        return fcntl.ioctl(fd, request, arg)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)


def _group_members(reader: TreeReader, sysfs_root: str, group: str) -> list[tuple[str, str | None]]:
    base = os.path.join(sysfs_root, "kernel", "iommu_groups", group, "devices")
    return [(a, reader.link_name(os.path.join(base, a, "driver"), warn=False)) for a in reader.listdir(base)]


class NotReady(Exception):
    """Why a device cannot be used by a VM."""


class Busy(Exception):
    """Another process holds the group open."""


def _group_of(reader: TreeReader, sysfs_root: str, address: str) -> str:
    device_dir = os.path.join(sysfs_root, "bus", "pci", "devices", address)
    if not os.path.isdir(device_dir):
        raise NotReady("no such PCI device")
    group = reader.link_name(os.path.join(device_dir, "iommu_group"), warn=False)
    if group is None:
        raise NotReady("no IOMMU group (is the IOMMU on?)")
    return group


def _on_vfio_pci(reader: TreeReader, sysfs_root: str, address: str) -> None:
    driver = reader.link_name(os.path.join(sysfs_root, "bus", "pci", "devices", address, "driver"), warn=False)
    if driver != "vfio-pci":
        raise NotReady("bound to %s, not vfio-pci" % (driver or "no driver"))


def _iommu_type(vfio: Vfio, container: int) -> int:
    version = vfio.ioctl(container, VFIO_GET_API_VERSION)
    if version != VFIO_API_VERSION:
        raise NotReady("VFIO API version %s, expected %d" % (version, VFIO_API_VERSION))
    for kind in (VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU):
        if vfio.ioctl(container, VFIO_CHECK_EXTENSION, kind):
            return kind
    raise NotReady("the VFIO container offers no type-1 IOMMU (is vfio_iommu_type1 loaded?)")


def _open_group(vfio: Vfio, group_file: str, procfs_root: str, group: str) -> int:
    try:
        return vfio.open(group_file)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            try:
                holders = vfio_users(procfs_root, os.path.dirname(os.path.dirname(group_file))).get(group, [])
            except VfioUsersUnknown:
                holders = []  # only names the holder in the message; the group is busy either way
            raise Busy("IOMMU group %s is in use by %s" % (group, ", ".join(holders) or "another process")) from exc
        raise NotReady("cannot open %s: %s" % (group_file, exc.strerror or exc)) from exc


def _read_ids(vfio: Vfio, address: str, group: str, sysfs_root: str, dev_root: str, procfs_root: str,
              reader: TreeReader) -> str:
    """vendor:device from the config region, through container, group and device descriptors."""
    fds: list[int] = []
    try:
        container = vfio.open(os.path.join(dev_root, "vfio", "vfio"))
        fds.append(container)
        iommu = _iommu_type(vfio, container)
        group_fd = _open_group(vfio, os.path.join(dev_root, "vfio", group), procfs_root, group)
        fds.insert(0, group_fd)
        status = bytearray(struct.pack(GROUP_STATUS, struct.calcsize(GROUP_STATUS), 0))
        vfio.ioctl(group_fd, VFIO_GROUP_GET_STATUS, status)
        if not struct.unpack(GROUP_STATUS, status)[1] & VFIO_GROUP_FLAGS_VIABLE:
            others = ["%s is on %s" % (a, d) for a, d in _group_members(reader, sysfs_root, group)
                      if a != address and d not in (None, "vfio-pci", "pci-stub", "pcieport")]
            raise NotReady("IOMMU group %s is not viable - %s; every device in the group must be on vfio-pci or "
                           "have no driver before a VM can use it" % (
                               group, "; ".join(others) or "a member is bound to a host driver"))
        vfio.ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, bytearray(struct.pack("i", container)))
        vfio.ioctl(container, VFIO_SET_IOMMU, iommu)
        device_fd = vfio.ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, bytearray(address.encode("ascii") + b"\0"))
        fds.insert(0, device_fd)
        info = bytearray(struct.pack(REGION_INFO, struct.calcsize(REGION_INFO), 0, VFIO_PCI_CONFIG_REGION_INDEX,
                                     0, 0, 0))
        vfio.ioctl(device_fd, VFIO_DEVICE_GET_REGION_INFO, info)
        size, offset = struct.unpack(REGION_INFO, info)[4:]
        if size < 4:
            raise NotReady("the PCI config region is %d bytes" % size)
        vendor, device = struct.unpack("<HH", vfio.pread(device_fd, 4, offset))
        return "%04x:%04x" % (vendor, device)
    except OSError as exc:
        raise NotReady("VFIO refused: %s" % (exc.strerror or exc)) from exc
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                vfio.close(fd)


def check_device(address: str, expected_id: str, sysfs_root: str = "/sys", dev_root: str = "/dev",
                 procfs_root: str = "/proc", vfio: Vfio | None = None) -> dict:
    """{address, expected_id, group, found_id, status, reason}; status ready | busy | failed.

    busy: another process (a running VM) holds the group open - the kernel allows one user at a time.
    """
    reader = TreeReader()
    result = {"address": address, "expected_id": expected_id, "group": None, "found_id": None}
    try:
        result["group"] = _group_of(reader, sysfs_root, address)
        _on_vfio_pci(reader, sysfs_root, address)
        result["found_id"] = _read_ids(vfio or Vfio(), address, result["group"], sysfs_root, dev_root, procfs_root,
                                       reader)
        if result["found_id"] != expected_id:
            raise NotReady("config space reads %s, expected %s" % (result["found_id"], expected_id))
    except Busy as exc:
        return dict(result, status="busy", reason="%s: %s" % (address, exc))
    except NotReady as exc:
        return dict(result, status="failed", reason="%s: %s" % (address, exc))
    return dict(result, status="ready", reason=None)
