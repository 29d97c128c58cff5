"""Real boot, run 4: a fresh guest, both identical ports by ID with `ids` binding."""

from __future__ import annotations

import pytest

from tests.e2e.test_real_boot import MGMT, PORT_A, PORT_B, reboots, recap_changed


@pytest.fixture(scope="module")
def fresh(guest_factory):
    return guest_factory("fresh")


def test_4_fresh_node_both_ports_by_id(fresh):
    extra = {"passthrough_devices": [{"id": "8086:10d3"}], "passthrough_bind_method": "ids",
             "passthrough_reboot": "if_needed"}
    out = fresh.playbook("vfio.proxmox.passthrough", extra)
    conf = fresh.sh("cat /etc/modprobe.d/vfio-proxmox.conf")
    assert "options vfio-pci ids=8086:10d3" in conf and "softdep e1000e pre: vfio-pci" in conf
    assert reboots(out) == 1
    assert (fresh.driver(PORT_A), fresh.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert fresh.driver(MGMT) == "virtio-pci"
    out = fresh.playbook("vfio.proxmox.passthrough", extra)
    assert (recap_changed(out), reboots(out)) == (0, 0)
