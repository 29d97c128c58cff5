"""Review 19b (adversarial): live release through sysfs when the native driver is not loaded."""

from __future__ import annotations

import os

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._bind import rebind
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import outcome

IGC = "0000:02:00.0"


class Kernel:
    """sysfs writes as the kernel answers them when igc is not loaded: unbind drops the driver link, a probe
    finds no driver (drivers_probe never loads a module)."""

    def __init__(self, sysfs: str) -> None:
        self.sysfs = sysfs

    def __call__(self, path: str, value: str) -> None:
        if path.endswith("/unbind"):
            link = os.path.join(self.sysfs, "bus", "pci", "devices", value, "driver")
            if os.path.islink(link):
                os.unlink(link)


def on_vfio_igc_unloaded(profile):
    profile["devices"][4].update(driver="vfio-pci")


def test_a_release_that_leaves_the_device_without_any_driver_is_not_reported_released(fake_node):
    """Rollback of a NIC bound by ids= at boot: igc was never loaded on this boot (vfio-pci took the card first),
    so after driver_override is cleared and vfio-pci unbinds, the probe finds no driver - the port has no
    interface until the next reboot. vfio_bind reports 'released' and the outcome says no reboot is required,
    so the administrator is told the NIC is back when it is not (its network stays down until a reboot)."""
    node = fake_node("guide-intel", mutate=on_vfio_igc_unloaded)
    root = node.roots["sysfs_root"]
    assert not os.path.isdir(os.path.join(root, "bus", "pci", "drivers", "igc"))
    result = rebind(root, IGC, "8086:15f3", "absent", False, Kernel(root))
    assert result["driver"] is None
    plan = {"bind_drivers": {IGC: "vfio-pci"}, "bind_targets": [{"address": IGC, "id": "8086:15f3",
                                                                 "state": "absent"}],
            "reboot_for_cmdline": False, "act": True, "reboot": "never", "verify": False}
    after = outcome(plan, [result])
    assert result["status"] != "released" or after["reboot_required"], (result, after)
