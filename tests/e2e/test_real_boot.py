"""Real boot: the role, reboots and the kernel in a QEMU guest with a VT-d IOMMU.

The tests run in order against one guest (state carries over, as on a real node), so
each reboot proves several things at once:
  1  discovery agrees with lspci
  2  one port by interface: address binding, the role's reboot, vfio-pci, and the port
     opens through VFIO as QEMU opens it, with the IDs lspci showed before
  2b a second run changes nothing; the verify playbook passes
  3  both ports by ID with `ids` binding: the second one binds live, then a reboot binds
     both at boot (ids= and softdep), the management NIC stays on virtio
  3b a group that is not viable (two functions of one slot, one left on e1000) fails the
     VFIO open check and the verify playbook, with the reason
  5  the management NIC is refused before anything changes
  5b a port dropped from the selection goes back to e1000e live, no reboot
  6a rollback is refused while a process (a stand-in for QEMU) holds a port's group open
  6  rollback and its reboot give the ports back; 7 a second rollback changes nothing

The guide done by hand, its adoption and rollback boot a guest of their own (test_guide_boot.py),
so the two run side by side.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.role_runs import (
    BOTH_BY_ID,
    IFACE_A,
    IFACE_B,
    IFACE_MGMT,
    MGMT,
    OWNED,
    PAIR_0,
    PAIR_1,
    PORT_A,
    PORT_B,
    PORT_ID,
    READY_TASK,
    lspci_blocks,
    reboots,
    recap_changed,
    task_result,
)


@pytest.fixture(scope="module")
def node(guest_factory):
    return guest_factory("node")


@pytest.fixture(scope="module")
def before(node):
    """lspci's view of the guest before anything was bound (filled by test 1)."""
    return {}


def test_1_discover_sees_the_iommu_both_ports_and_the_management_nic(node, before):
    node.playbook("vfio.proxmox.discover")
    saved = node.facts()
    facts, lspci = saved["facts"], lspci_blocks(saved["lspci"])
    before.update(lspci)
    host = facts["vfio_host"]
    assert host["iommu_active"] is True
    assert host["boot_loader"]["name"] == "grub"
    devices = {d["address"]: d for d in facts["vfio_pci_devices"]}
    for port, iface in ((PORT_A, IFACE_A), (PORT_B, IFACE_B)):
        assert (devices[port]["vendor"], devices[port]["device"], devices[port]["driver"]) == ("8086", "10d3", "e1000e")
        assert [n["name"] for n in devices[port]["netdevs"]] == [iface]
        assert devices[port]["netdevs"][0]["management"] is False
        assert devices[port]["iommu_group"] is not None
    assert devices[PORT_A]["iommu_group"] != devices[PORT_B]["iommu_group"]
    # The two functions of one slot share a group: the kernel cannot isolate them (no ACS).
    assert devices[PAIR_0]["iommu_group"] == devices[PAIR_1]["iommu_group"]
    assert devices[PAIR_0]["driver"] == devices[PAIR_1]["driver"] == "e1000"
    assert devices[MGMT]["netdevs"][0]["management"] is True
    assert {m["interface"] for m in host["management_interfaces"]} == {IFACE_MGMT}
    # pci_facts agrees with lspci inside the guest on every device.
    assert sorted(devices) == sorted(lspci)
    for address, want in lspci.items():
        got = devices[address]
        assert (got["vendor"], got["device"], got["driver"]) == (want["Vendor"], want["Device"], want.get("Driver"))


def test_2_one_port_by_interface_reboots_into_vfio_pci_and_opens_like_qemu_does(node, before):
    out = node.playbook("vfio.proxmox.passthrough", {
        "passthrough_devices": [{"interface": IFACE_A}], "passthrough_reboot": "if_needed"})
    assert reboots(out) == 1
    # No Proxmox VE here: the guest policy has nothing to do and says so; the reboot goes on.
    assert "no pvesh here - not a Proxmox VE node, no guests to consider" in out
    assert "8086:10d3 bound by address: 0000:00:05.0 has the same ID and is not selected" in out
    assert task_result(out, READY_TASK).startswith("ok:")
    assert "iommu=pt" in node.sh("cat /proc/cmdline").split()
    assert "Kernel driver in use: vfio-pci" in node.sh("lspci -nnk -s %s" % PORT_A)
    group = node.sh("basename $(readlink /sys/bus/pci/devices/%s/iommu_group)" % PORT_A).strip()
    assert node.sh("test -c /dev/vfio/%s && echo yes" % group).strip() == "yes"
    assert node.driver(PORT_B) == "e1000e"
    link = json.loads(node.sh("ip -j link show %s" % IFACE_B))[0]
    assert "UP" in link["flags"]
    assert "bind %s 8086:10d3" % PORT_A in node.sh("cat /etc/initramfs-tools/scripts/init-top/vfio-proxmox")
    assert "ids=" not in node.sh("cat /etc/modprobe.d/vfio-proxmox.conf")
    # Container, group, device, config space: the IDs lspci showed before the binding.
    result = node.module("vfio.proxmox.vfio_ready", {"devices": [{"address": PORT_A, "id": PORT_ID}]})
    ready = result["results"][0]
    want = before[PORT_A]
    assert (ready["status"], ready["group"], ready["found_id"]) == (
        "ready", group, "%s:%s" % (want["Vendor"], want["Device"]))


def test_2b_second_run_changes_nothing_and_verify_passes(node):
    out = node.playbook("vfio.proxmox.passthrough", {
        "passthrough_devices": [{"interface": IFACE_A}], "passthrough_reboot": "if_needed"})
    assert (recap_changed(out), reboots(out)) == (0, 0)
    assert task_result(out, READY_TASK) is None or task_result(out, READY_TASK).startswith("skipping")
    out = node.playbook("vfio.proxmox.verify", {"passthrough_devices": [{"interface": IFACE_A}]})
    assert task_result(out, READY_TASK).startswith("ok:")


def test_3_both_ports_by_id_bind_live_then_at_boot(node, before):
    out = node.playbook("vfio.proxmox.passthrough", dict(BOTH_BY_ID, passthrough_reboot="never"))
    assert reboots(out) == 0
    assert "Reboot required" not in out
    assert node.driver(PORT_B) == "vfio-pci"
    assert task_result(out, READY_TASK).startswith("ok:")  # the live-bound port opens through VFIO
    conf = node.sh("cat /etc/modprobe.d/vfio-proxmox.conf")
    assert "options vfio-pci ids=8086:10d3" in conf and "softdep e1000e pre: vfio-pci" in conf
    node.reboot()
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert node.driver(MGMT) == "virtio-pci"
    out = node.playbook("vfio.proxmox.verify", BOTH_BY_ID)
    assert task_result(out, READY_TASK).startswith("ok:")
    out = node.playbook("vfio.proxmox.passthrough", dict(BOTH_BY_ID, passthrough_reboot="if_needed"))
    assert (recap_changed(out), reboots(out)) == (0, 0)


def test_3b_a_group_that_is_not_viable_is_not_ready_for_a_vm(node):
    pair = {"address": PAIR_0, "id": "8086:100e"}
    node.module("vfio.proxmox.vfio_bind", {"devices": [pair]})
    try:
        assert (node.driver(PAIR_0), node.driver(PAIR_1)) == ("vfio-pci", "e1000")
        group = node.sh("basename $(readlink /sys/bus/pci/devices/%s/iommu_group)" % PAIR_0).strip()
        result = node.module("vfio.proxmox.vfio_ready", {"devices": [pair]}, expect_failed=True)
        assert result["msg"] == (
            "vfio_ready: not ready for a VM - %s: IOMMU group %s is not viable - %s is on e1000; every device in "
            "the group must be on vfio-pci or have no driver before a VM can use it" % (PAIR_0, group, PAIR_1))
        # The verify playbook says the same for a device selected with allow_group.
        out = node.playbook("vfio.proxmox.verify", {"passthrough_devices": [
            {"id": PORT_ID}, {"address": PAIR_0, "allow_group": True}]}, expect_rc=2)
        assert "%s: IOMMU group %s is not viable - %s is on e1000" % (PAIR_0, group, PAIR_1) in out
    finally:
        node.module("vfio.proxmox.vfio_bind", {"devices": [pair], "state": "absent"})
    assert node.driver(PAIR_0) == "e1000"


def test_5_selecting_the_management_nic_is_refused_before_anything_changes(node):
    before = node.sh("find /etc /boot/grub -type f -print0 | sort -z | xargs -0 sha256sum")
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_devices": [{"interface": IFACE_MGMT}]},
                        expect_rc=2)
    assert "refusing - it carries a management path" in out
    assert node.sh("find /etc /boot/grub -type f -print0 | sort -z | xargs -0 sha256sum") == before


def test_5b_a_port_dropped_from_the_selection_goes_back_live(node):
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_devices": [{"address": PORT_A}],
                                                     "passthrough_reboot": "if_needed"})
    assert reboots(out) == 0
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "e1000e")
    assert "bind %s 8086:10d3" % PORT_A in node.sh("cat /etc/initramfs-tools/scripts/init-top/vfio-proxmox")
    assert "ids=" not in node.sh("cat /etc/modprobe.d/vfio-proxmox.conf")


def test_6a_rollback_refuses_to_take_a_port_from_a_running_vm(node):
    group = node.sh("basename $(readlink /sys/bus/pci/devices/%s/iommu_group)" % PORT_A).strip()
    with node.holding_group(group) as pid:
        before = node.sh("find /etc /boot/grub -type f -print0 | sort -z | xargs -0 sha256sum")
        out = node.playbook("vfio.proxmox.rollback", {"passthrough_devices": [], "passthrough_reboot": "if_needed"},
                            expect_rc=2)
        assert "%s (%s) is no longer selected, but IOMMU group %s is in use by %s (python3 -c" % (
            PORT_A, PORT_ID, group, pid) in out
        assert node.sh("find /etc /boot/grub -type f -print0 | sort -z | xargs -0 sha256sum") == before
        assert node.driver(PORT_A) == "vfio-pci"


def test_6_rollback_and_reboot_give_the_ports_back(node):
    out = node.playbook("vfio.proxmox.rollback", {"passthrough_devices": [], "passthrough_reboot": "if_needed"})
    assert reboots(out) == 1
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("e1000e", "e1000e")
    assert "iommu=pt" not in node.sh("cat /proc/cmdline").split()
    assert node.sh("ls -d %s 2>/dev/null || true" % " ".join(OWNED)).strip() == ""
    assert "vfio.proxmox" not in node.sh("cat /etc/initramfs-tools/modules")


def test_7_rollback_again_changes_nothing(node):
    out = node.playbook("vfio.proxmox.rollback", {"passthrough_devices": [{"address": PORT_A}, {"address": PORT_B}],
                                                  "passthrough_reboot": "if_needed"})
    assert (recap_changed(out), reboots(out)) == (0, 0)
