"""Real boot: the role, a reboot and the kernel in a QEMU guest with a VT-d IOMMU.

The tests run in order against one guest (state carries over, as on a real
node): runs 1-3 and 5-7 of the issue; run 4 is in test_real_boot_by_id.py.
"""

from __future__ import annotations

import json

import pytest

PORT_A, PORT_B, MGMT = "0000:00:04.0", "0000:00:05.0", "0000:00:03.0"
IFACE_A, IFACE_B, IFACE_MGMT = "enp0s4", "enp0s5", "enp0s3"
OWNED = ["/etc/modprobe.d/vfio-proxmox.conf", "/etc/modules-load.d/vfio-proxmox.conf",
         "/etc/default/grub.d/vfio-proxmox.cfg", "/etc/initramfs-tools/scripts/init-top/vfio-proxmox",
         "/etc/vfio-proxmox"]
ROLE = "vfio.proxmox.passthrough"


def lspci_blocks(text: str) -> dict[str, dict]:
    blocks = {}
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(":\t", 1) for line in block.splitlines() if ":\t" in line)
        blocks[fields["Slot"]] = fields
    return blocks


def reboots(output: str) -> int:
    """How many times the role's reboot task ran (changed) in a playbook's output."""
    lines = output.splitlines()
    return sum(1 for i, line in enumerate(lines) if line.startswith("TASK [vfio.proxmox.passthrough : Reboot the node]")
               and i + 1 < len(lines) and lines[i + 1].startswith("changed:"))


def recap_changed(output: str) -> int:
    recap = output.split("PLAY RECAP", 1)[1]
    return int(recap.split("changed=", 1)[1].split()[0])


@pytest.fixture(scope="module")
def node(guest_factory):
    return guest_factory("node")


def test_1_discover_sees_the_iommu_both_ports_and_the_management_nic(node):
    node.playbook("vfio.proxmox.discover")
    saved = node.facts()
    facts, lspci = saved["facts"], lspci_blocks(saved["lspci"])
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
    assert devices[MGMT]["netdevs"][0]["management"] is True
    assert {m["interface"] for m in host["management_interfaces"]} == {IFACE_MGMT}
    # pci_facts agrees with lspci inside the guest on every device.
    assert sorted(devices) == sorted(lspci)
    for address, want in lspci.items():
        got = devices[address]
        assert (got["vendor"], got["device"], got["driver"]) == (want["Vendor"], want["Device"], want.get("Driver"))


def test_2_one_port_by_interface_reboots_into_vfio_pci(node):
    out = node.playbook(ROLE.rsplit(".", 1)[0] + ".passthrough", {
        "passthrough_devices": [{"interface": IFACE_A}], "passthrough_reboot": "if_needed"})
    assert reboots(out) == 1
    assert "8086:10d3 bound by address: 0000:00:05.0 has the same ID and is not selected" in out
    assert "iommu=pt" in node.sh("cat /proc/cmdline").split()
    assert "Kernel driver in use: vfio-pci" in node.sh("lspci -nnk -s %s" % PORT_A)
    group = node.sh("basename $(readlink /sys/bus/pci/devices/%s/iommu_group)" % PORT_A).strip()
    assert node.sh("test -c /dev/vfio/%s && echo yes" % group).strip() == "yes"
    assert node.driver(PORT_B) == "e1000e"
    link = json.loads(node.sh("ip -j link show %s" % IFACE_B))[0]
    assert "UP" in link["flags"]
    assert "bind %s 8086:10d3" % PORT_A in node.sh("cat /etc/initramfs-tools/scripts/init-top/vfio-proxmox")
    assert "ids=" not in node.sh("cat /etc/modprobe.d/vfio-proxmox.conf")


def test_2b_second_run_changes_nothing_and_does_not_reboot(node):
    out = node.playbook("vfio.proxmox.passthrough", {
        "passthrough_devices": [{"interface": IFACE_A}], "passthrough_reboot": "if_needed"})
    assert (recap_changed(out), reboots(out)) == (0, 0)
    node.playbook("vfio.proxmox.verify", {"passthrough_devices": [{"interface": IFACE_A}]})


def test_3_second_port_binds_live_without_a_reboot(node):
    devices = [{"interface": IFACE_A}, {"interface": IFACE_B}]
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_devices": devices, "passthrough_reboot": "never"})
    assert reboots(out) == 0
    assert "Reboot required" not in out
    assert node.driver(PORT_B) == "vfio-pci"
    # Both ports selected: auto now binds their ID.
    assert "options vfio-pci ids=8086:10d3" in node.sh("cat /etc/modprobe.d/vfio-proxmox.conf")
    node.reboot()
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    node.playbook("vfio.proxmox.verify", {"passthrough_devices": devices})
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_devices": devices, "passthrough_reboot": "if_needed"})
    assert (recap_changed(out), reboots(out)) == (0, 0)


def test_5_selecting_the_management_nic_is_refused_before_anything_changes(node):
    before = node.sh("find /etc /boot/grub -type f -print0 | sort -z | xargs -0 sha256sum")
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_devices": [{"interface": IFACE_MGMT}]},
                        expect_rc=2)
    assert "refusing - it carries a management path" in out
    assert node.sh("find /etc /boot/grub -type f -print0 | sort -z | xargs -0 sha256sum") == before


def test_6_rollback_and_reboot_give_the_ports_back(node):
    devices = [{"interface": IFACE_A}, {"interface": IFACE_B}]
    out = node.playbook("vfio.proxmox.rollback", {"passthrough_devices": devices, "passthrough_reboot": "if_needed"})
    assert reboots(out) == 1
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("e1000e", "e1000e")
    assert "iommu=pt" not in node.sh("cat /proc/cmdline").split()
    assert node.sh("ls -d %s 2>/dev/null || true" % " ".join(OWNED)).strip() == ""
    assert "vfio.proxmox" not in node.sh("cat /etc/initramfs-tools/modules")


def test_7_rollback_again_changes_nothing(node):
    out = node.playbook("vfio.proxmox.rollback", {"passthrough_devices": [{"address": PORT_A}, {"address": PORT_B}],
                                                  "passthrough_reboot": "if_needed"})
    assert (recap_changed(out), reboots(out)) == (0, 0)
