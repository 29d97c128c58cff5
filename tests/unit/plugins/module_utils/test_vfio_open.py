"""The VFIO open check on fake trees, against a stand-in for the kernel's VFIO calls.

The stand-in (KernelVfio) answers as include/uapi/linux/vfio.h and drivers/vfio/group.c
describe: API version 0, the type-1 extensions, a group viable only while every member is
on vfio-pci (or a driver that manages DMA itself, or none), one opener at a time (EBUSY),
GET_DEVICE_FD only after the group is in a container whose IOMMU is set. The real kernel
answers in the real-boot suite (tests/e2e).
"""

from __future__ import annotations

import errno
import os
import struct

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery import _vfio_open as vfio_open

DMA_MANAGED = (None, "vfio-pci", "pci-stub", "pcieport")


class KernelVfio(vfio_open.Vfio):
    """A test double of the VFIO uAPI over a fake sysfs tree; it says so in its name."""

    def __init__(self, sysfs_root: str, config: dict[str, bytes], busy: tuple = (), type1: bool = True) -> None:
        self.sysfs_root, self.config, self.busy, self.type1 = sysfs_root, config, busy, type1
        self.files: dict[int, tuple] = {}
        self.next_fd = 10
        self.iommu_set = False
        self.calls: list[int] = []

    def _new(self, what: tuple) -> int:
        self.next_fd += 1
        self.files[self.next_fd] = what
        return self.next_fd

    def open(self, path: str) -> int:
        name = os.path.basename(path)
        if name == "vfio":
            return self._new(("container",))
        if name in self.busy:
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        members = os.path.join(self.sysfs_root, "kernel", "iommu_groups", name, "devices")
        if not os.path.isdir(members):
            raise OSError(errno.ENOENT, "No such file or directory", path)
        return self._new(("group", name, {"container": None}))

    def close(self, fd: int) -> None:
        del self.files[fd]

    def _viable(self, group: str) -> bool:
        base = os.path.join(self.sysfs_root, "kernel", "iommu_groups", group, "devices")
        drivers = [os.path.basename(os.readlink(os.path.join(base, a, "driver")))
                   if os.path.islink(os.path.join(base, a, "driver")) else None for a in os.listdir(base)]
        return all(d in DMA_MANAGED for d in drivers)

    def ioctl(self, fd: int, request: int, arg=0):
        self.calls.append(request)
        handlers = {
            vfio_open.VFIO_GET_API_VERSION: lambda kind, arg: 0,
            vfio_open.VFIO_CHECK_EXTENSION: lambda kind, arg: int(
                self.type1 and arg in (vfio_open.VFIO_TYPE1_IOMMU, vfio_open.VFIO_TYPE1v2_IOMMU)),
            vfio_open.VFIO_GROUP_GET_STATUS: self._status,
            vfio_open.VFIO_GROUP_SET_CONTAINER: self._set_container,
            vfio_open.VFIO_SET_IOMMU: self._set_iommu,
            vfio_open.VFIO_GROUP_GET_DEVICE_FD: self._device_fd,
            vfio_open.VFIO_DEVICE_GET_REGION_INFO: self._region_info,
        }
        return handlers[request](self.files[fd], arg)

    def _status(self, kind, arg):
        arg[:] = struct.pack("II", 8, 1 if self._viable(kind[1]) else 0)
        return 0

    def _set_container(self, kind, arg):
        if not self._viable(kind[1]):
            raise OSError(errno.EPERM, "Operation not permitted")
        kind[2]["container"] = struct.unpack("i", arg)[0]
        return 0

    def _set_iommu(self, kind, arg):
        self.iommu_set = True
        return 0

    def _device_fd(self, kind, arg):
        if kind[2]["container"] is None or not self.iommu_set:
            raise OSError(errno.EINVAL, "Invalid argument")
        address = bytes(arg).rstrip(b"\0").decode()
        if not os.path.isdir(os.path.join(self.sysfs_root, "kernel", "iommu_groups", kind[1], "devices", address)):
            raise OSError(errno.ENODEV, "No such device")
        return self._new(("device", address))

    def _region_info(self, kind, arg):
        argsz, _flags, index, _cap, _size, _offset = struct.unpack("IIIIQQ", arg)
        assert index == vfio_open.VFIO_PCI_CONFIG_REGION_INDEX
        arg[:] = struct.pack("IIIIQQ", argsz, 3, index, 0, 256, 7 << 40)
        return 0

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        assert offset == 7 << 40
        return self.config[self.files[fd][1]][:size]


def bound(address):
    """A profile mutation: this address on vfio-pci."""
    def mutate(profile):
        for dev in profile["devices"]:
            if dev["address"] == address:
                dev["driver"] = "vfio-pci"
                dev["netdevs"] = []
    return mutate


IGC = struct.pack("<HH", 0x8086, 0x15F3)


def check(node, address, expected, vfio, busy_proc=None):
    return vfio_open.check_device(address, expected, node.roots["sysfs_root"], "/dev",
                                  busy_proc or node.roots["procfs_root"], vfio=vfio)


def test_a_bound_device_in_its_own_group_is_ready(fake_node):
    node = fake_node("guide-intel", mutate=bound("0000:02:00.0"))
    vfio = KernelVfio(node.roots["sysfs_root"], {"0000:02:00.0": IGC})
    result = check(node, "0000:02:00.0", "8086:15f3", vfio)
    assert result == {"address": "0000:02:00.0", "expected_id": "8086:15f3", "group": "12", "found_id": "8086:15f3",
                      "status": "ready", "reason": None}
    assert vfio.files == {}  # every descriptor closed
    assert vfio.calls[-1] == vfio_open.VFIO_DEVICE_GET_REGION_INFO


def test_other_ids_in_config_space_fail(fake_node):
    node = fake_node("guide-intel", mutate=bound("0000:02:00.0"))
    vfio = KernelVfio(node.roots["sysfs_root"], {"0000:02:00.0": struct.pack("<HH", 0x8086, 0x125C)})
    result = check(node, "0000:02:00.0", "8086:15f3", vfio)
    assert (result["status"], result["reason"]) == (
        "failed", "0000:02:00.0: config space reads 8086:125c, expected 8086:15f3")


def test_a_group_with_a_member_on_a_host_driver_is_not_viable(fake_node):
    node = fake_node("chipset-group", mutate=bound("0000:03:00.0"))
    vfio = KernelVfio(node.roots["sysfs_root"], {})
    result = check(node, "0000:03:00.0", "8086:1539", vfio)
    assert result["status"] == "failed"
    assert result["reason"].startswith("0000:03:00.0: IOMMU group 5 is not viable - 0000:00:14.0 is on xhci_hcd; ")
    assert "0000:00:1c.0" not in result["reason"]  # the root port on pcieport does not spoil the group
    assert vfio.files == {}


@pytest.mark.parametrize("driver, reason", [("igc", "bound to igc, not vfio-pci"),
                                            (None, "bound to no driver, not vfio-pci")])
def test_a_device_not_on_vfio_pci_fails_before_any_vfio_call(fake_node, driver, reason):
    def mutate(profile):
        next(d for d in profile["devices"] if d["address"] == "0000:02:00.0")["driver"] = driver
    node = fake_node("guide-intel", mutate=mutate)
    vfio = KernelVfio(node.roots["sysfs_root"], {})
    assert check(node, "0000:02:00.0", "8086:15f3", vfio)["reason"] == "0000:02:00.0: " + reason
    assert vfio.calls == []


def test_without_an_iommu_there_is_no_group(fake_node):
    node = fake_node("iommu-off")
    device = next(d["address"] for d in node.profile["devices"] if d.get("driver") not in (None, "pcieport"))
    result = check(node, device, "0000:0000", KernelVfio(node.roots["sysfs_root"], {}))
    assert result["reason"] == "%s: no IOMMU group (is the IOMMU on?)" % device


def test_no_type1_iommu_is_named(fake_node):
    node = fake_node("guide-intel", mutate=bound("0000:02:00.0"))
    vfio = KernelVfio(node.roots["sysfs_root"], {"0000:02:00.0": IGC}, type1=False)
    assert "offers no type-1 IOMMU" in check(node, "0000:02:00.0", "8086:15f3", vfio)["reason"]


def test_a_group_held_by_a_running_vm_is_busy_and_names_the_process(fake_node, tmp_path):
    node = fake_node("guide-intel", mutate=bound("0000:02:00.0"))
    proc = tmp_path / "proc"
    (proc / "4242" / "fd").mkdir(parents=True)
    (proc / "4242" / "fd" / "31").symlink_to("/dev/vfio/12")
    (proc / "4242" / "cmdline").write_bytes(b"/usr/bin/kvm\x00-id\x00101\x00-name\x00opnsense\x00")
    (proc / "self").mkdir()
    vfio = KernelVfio(node.roots["sysfs_root"], {}, busy=("12",))
    result = check(node, "0000:02:00.0", "8086:15f3", vfio, busy_proc=str(proc))
    assert (result["status"], result["reason"]) == (
        "busy", "0000:02:00.0: IOMMU group 12 is in use by 4242 (/usr/bin/kvm -id 101)")
