"""Live binding through sysfs, on fake trees: what is written, and when nothing is."""

from __future__ import annotations

import errno
import os

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._bind import rebind

IGC = "0000:02:00.0"


class Recorder:
    """Records sysfs writes; optionally plays the kernel by moving the driver link on probe."""

    def __init__(self, sysfs: str, kernel_moves_to: str | None = None) -> None:
        self.sysfs = sysfs
        self.writes: list[tuple[str, str]] = []
        self.kernel_moves_to = kernel_moves_to

    def __call__(self, path: str, value: str) -> None:
        self.writes.append((os.path.relpath(path, self.sysfs), value))
        if path.endswith("drivers_probe") and self.kernel_moves_to:
            link = os.path.join(self.sysfs, "bus", "pci", "devices", value, "driver")
            if os.path.islink(link):
                os.unlink(link)
            target = os.path.join(self.sysfs, "bus", "pci", "drivers", self.kernel_moves_to)
            os.makedirs(target, exist_ok=True)
            os.symlink(os.path.relpath(target, os.path.realpath(os.path.dirname(link))), link)


def sysfs(node):
    return node.roots["sysfs_root"]


def test_matching_device_is_overridden_unbound_and_probed(fake_node):
    root = sysfs(fake_node("guide-intel"))
    write = Recorder(root, kernel_moves_to="vfio-pci")
    result = rebind(root, IGC, "8086:15f3", "present", False, write)
    assert write.writes == [
        ("bus/pci/devices/0000:02:00.0/driver_override", "vfio-pci"),
        ("bus/pci/drivers/igc/unbind", IGC),
        ("bus/pci/drivers_probe", IGC),
    ]
    assert (result["status"], result["driver"], result["changed"]) == ("bound", "vfio-pci", True)


def test_kernel_keeping_the_old_driver_is_reported_pending(fake_node):
    root = sysfs(fake_node("guide-intel"))
    result = rebind(root, IGC, "8086:15f3", "present", False, Recorder(root))
    assert (result["status"], result["driver"]) == ("pending", "igc")


def test_changed_id_is_skipped_without_a_write(fake_node):
    root = sysfs(fake_node("guide-intel"))
    write = Recorder(root)
    result = rebind(root, IGC, "8086:1521", "present", False, write)
    assert write.writes == []
    assert result["status"] == "skipped"
    assert result["reason"] == "vendor:device is 8086:15f3, expected 8086:1521"


def test_missing_device_is_skipped(fake_node):
    root = sysfs(fake_node("guide-intel"))
    result = rebind(root, "0000:09:00.0", "8086:15f3", "present", False, Recorder(root))
    assert (result["status"], result["reason"]) == ("skipped", "no such device")


def test_already_on_vfio_pci_needs_nothing(fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver="vfio-pci"))
    root = sysfs(node)
    write = Recorder(root)
    result = rebind(root, IGC, "8086:15f3", "present", False, write)
    assert (write.writes, result["status"], result["changed"]) == ([], "already", False)


def test_unbound_device_is_only_overridden_and_probed(fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver=None))
    root = sysfs(node)
    write = Recorder(root, kernel_moves_to="vfio-pci")
    rebind(root, IGC, "8086:15f3", "present", False, write)
    assert [w[0] for w in write.writes] == ["bus/pci/devices/0000:02:00.0/driver_override", "bus/pci/drivers_probe"]


def test_check_mode_writes_nothing(fake_node):
    root = sysfs(fake_node("guide-intel"))
    write = Recorder(root)
    result = rebind(root, IGC, "8086:15f3", "present", True, write)
    assert (write.writes, result["status"], result["changed"]) == ([], "would_bind", True)


def test_release_gives_the_device_back(fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver="vfio-pci"))
    root = sysfs(node)
    write = Recorder(root, kernel_moves_to="igc")
    result = rebind(root, IGC, "8086:15f3", "absent", False, write)
    assert write.writes == [
        ("bus/pci/devices/0000:02:00.0/driver_override", "\n"),
        ("bus/pci/drivers/vfio-pci/unbind", IGC),
        ("bus/pci/drivers_probe", IGC),
    ]
    assert (result["status"], result["driver"]) == ("released", "igc")


def test_release_takes_the_id_out_of_vfio_pci_s_dynamic_ids(fake_node):
    """Bound by `ids=` at boot, vfio-pci would win the probe again (seen on a real kernel)."""
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver="vfio-pci"))
    root = sysfs(node)
    remove_id = os.path.join(root, "bus", "pci", "drivers", "vfio-pci", "remove_id")
    open(remove_id, "w").close()
    write = Recorder(root, kernel_moves_to="igc")
    rebind(root, IGC, "8086:15f3", "absent", False, write)
    assert write.writes[-2:] == [("bus/pci/drivers/vfio-pci/remove_id", "8086 15f3"), ("bus/pci/drivers_probe", IGC)]


def test_an_id_vfio_pci_never_had_is_no_error(fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver="vfio-pci"))
    root = sysfs(node)
    open(os.path.join(root, "bus", "pci", "drivers", "vfio-pci", "remove_id"), "w").close()
    recorder = Recorder(root, kernel_moves_to="igc")

    def write(path, value):
        if path.endswith("remove_id"):
            raise OSError(errno.ENODEV, "No such device")
        recorder(path, value)
    assert rebind(root, IGC, "8086:15f3", "absent", False, write)["status"] == "released"


def test_release_of_a_device_on_its_native_driver_is_a_no_op(fake_node):
    root = sysfs(fake_node("guide-intel"))
    write = Recorder(root)
    result = rebind(root, IGC, "8086:15f3", "absent", False, write)
    assert (write.writes, result["status"]) == ([], "already")


def held_open(proc, group: str, pid: str = "4242"):
    """A fake /proc where PID holds /dev/vfio/<group> open, as a running VM's QEMU does."""
    (proc / pid / "fd").mkdir(parents=True)
    (proc / pid / "fd" / "27").symlink_to("/dev/vfio/%s" % group)
    (proc / pid / "cmdline").write_bytes(b"/usr/bin/kvm\x00-id\x00101\x00")
    return str(proc)


def test_a_device_a_vm_holds_is_never_released(fake_node, tmp_path):
    def on_vfio(profile):
        next(d for d in profile["devices"] if d["address"] == IGC)["driver"] = "vfio-pci"
    root = sysfs(fake_node("guide-intel", mutate=on_vfio))
    write = Recorder(root)
    result = rebind(root, IGC, "8086:15f3", "absent", False, write, procfs_root=held_open(tmp_path / "proc", "12"))
    assert (result["status"], result["reason"], write.writes) == (
        "in_use", "IOMMU group 12 is in use by 4242 (/usr/bin/kvm -id 101)", [])
    # Another group open elsewhere does not hold this one.
    other = rebind(root, IGC, "8086:15f3", "absent", True, write, procfs_root=held_open(tmp_path / "proc2", "9"))
    assert other["status"] == "would_release"
    # Fail closed: a /proc that cannot be read may hide the VM that holds it.
    unknown = rebind(root, IGC, "8086:15f3", "absent", False, write, procfs_root=str(tmp_path / "no-proc"))
    assert (unknown["status"], write.writes) == ("in_use", [])
    assert unknown["reason"].startswith("whether a VM holds IOMMU group 12 cannot be known: ")
