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
  8  the guide done by hand (bench/baseline/guide.yml, blacklisting e1000e), not booted yet;
     8b adopted before that boot: the ports bind live, the role reboots once for the
     command line, ports on vfio-pci, the management NIC up; 8c the rollback gives the
     guide's files back byte for byte, the ports stay on vfio-pci and the guide's own
     configuration boots and binds both ports
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PORT_A, PORT_B, MGMT = "0000:00:04.0", "0000:00:05.0", "0000:00:03.0"
PAIR_0, PAIR_1 = "0000:00:06.0", "0000:00:06.1"
IFACE_A, IFACE_B, IFACE_MGMT = "enp0s4", "enp0s5", "enp0s3"
PORT_ID = "8086:10d3"
OWNED = ["/etc/modprobe.d/vfio-proxmox.conf", "/etc/modules-load.d/vfio-proxmox.conf",
         "/etc/default/grub.d/vfio-proxmox.cfg", "/etc/initramfs-tools/scripts/init-top/vfio-proxmox",
         "/etc/vfio-proxmox"]
BOTH_BY_ID = {"passthrough_devices": [{"id": PORT_ID}], "passthrough_bind_method": "ids"}
READY_TASK = "TASK [vfio.proxmox.passthrough : Open each device through VFIO as a VM would]"


def lspci_blocks(text: str) -> dict[str, dict]:
    blocks = {}
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(":\t", 1) for line in block.splitlines() if ":\t" in line)
        blocks[fields["Slot"]] = fields
    return blocks


def task_result(output: str, task: str) -> str | None:
    """The first result line ("ok: [pve-e2e]", "skipping: ...") after a task's header, or None."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(task):
            results = ("ok", "changed", "skipping", "fatal", "failed")
            return next((n for n in lines[i + 1:] if n.split(":", 1)[0] in results), None)
    return None


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


GUIDE_FILES = "/etc/default/grub /etc/modules /etc/modprobe.d/vfio.conf /etc/modprobe.d/blacklist.conf"
GUIDE = {"guide_ids": PORT_ID, "guide_driver": "e1000e"}


@pytest.fixture(scope="module")
def guide(node):
    """The guide's files as the guide left them (filled by test 8)."""
    return {}


def test_8_the_guide_done_by_hand(node, guide):
    # Not booted here (a reboot costs minutes): 8c boots the guide's configuration and checks it binds.
    node.playbook(str(REPO / "bench" / "baseline" / "guide.yml"), GUIDE)
    guide["sha256"] = node.sh("sha256sum %s" % GUIDE_FILES)
    assert "options vfio-pci ids=%s" % PORT_ID in node.sh("cat /etc/modprobe.d/vfio.conf")
    assert "iommu=pt" not in node.sh("cat /proc/cmdline").split()


def test_8b_adopted_before_its_boot_then_booted_on_the_roles_configuration(node):
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_adopt": True, "passthrough_reboot": "if_needed"})
    # The guide's command line is not in force yet: the role reboots once for it.
    assert reboots(out) == 1
    assert "adopting /etc/modprobe.d/vfio.conf:1 'options vfio-pci ids=8086:10d3'" in out
    assert node.sh("grep -c '^#vfio.proxmox adopted# ' /etc/modprobe.d/vfio.conf").strip() == "1"
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert node.driver(MGMT) == "virtio-pci"
    assert "UP" in json.loads(node.sh("ip -j link show %s" % IFACE_MGMT))[0]["flags"]
    assert {"intel_iommu=on", "iommu=pt"} <= set(node.sh("cat /proc/cmdline").split())
    # The hand-made blacklist is gone from the running kernel's configuration, the role's ids are there.
    config = node.sh("modprobe -c").splitlines()
    assert "blacklist e1000e" not in config and "options vfio_pci ids=8086:10d3" in config
    out = node.playbook("vfio.proxmox.verify", {"passthrough_devices": [{"id": PORT_ID}]})
    assert task_result(out, READY_TASK).startswith("ok:")
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_adopt": True, "passthrough_reboot": "if_needed"})
    assert (recap_changed(out), reboots(out)) == (0, 0)


def test_8c_rollback_gives_the_guide_back_byte_for_byte_and_it_boots_as_before(node, guide):
    out = node.playbook("vfio.proxmox.rollback", {"passthrough_devices": [], "passthrough_reboot": "if_needed"})
    # The guide's configuration binds the ports again: they stay, and its command line needs no reboot.
    assert reboots(out) == 0
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert node.sh("sha256sum %s" % GUIDE_FILES) == guide["sha256"]
    assert node.sh("ls -d %s 2>/dev/null || true" % " ".join(OWNED)).strip() == ""
    node.reboot()
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert "blacklist e1000e" in node.sh("modprobe -c").splitlines()
