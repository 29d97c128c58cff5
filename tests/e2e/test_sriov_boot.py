"""SR-IOV on a real kernel: Debian 13's QEMU (from a chroot, tests/e2e/qemu10.py) emulates the
Intel 82576 (`igb`, PF 8086:10c9, up to 7 VFs 8086:10ca) behind a PCIe root port, under a VT-d
IOMMU; the guest's own kernel creates the VFs. The tests run in order on one guest:
  1  pci_facts sees the PF, its 7 possible VFs and none enabled
  2  sriov_vfs creates 2 VFs, sets MAC/VLAN/spoof check (ip -d link shows them), binds both to
     vfio-pci, each in its own IOMMU group; a second run changes nothing
  3  2 -> 4: 0 is written first (the kernel refuses 4 over 2), the 4 VFs come up
  4  a count change while a process holds a VF's IOMMU group open is refused, nothing changes
  5  0 removes every VF
  6  the sriov playbook (the passthrough role) makes 3 VFs now and its unit makes them again at
     boot (same derived MACs, the VLAN, on vfio-pci, the PF up); a second run changes nothing
  6b systemctl restart of the unit leaves a VF a process holds open on vfio-pci (issue 19)
  6c vf_driver host with the same count gives the VFs to igbvf now, not at the next boot (issue 19)
  7  the rollback playbook removes the VFs, the unit, its script and its configuration
"""

from __future__ import annotations

import json

import pytest

from tests.e2e import qemu10

PF_ID, VF_ID = "8086:10c9", "8086:10ca"
IGB = ["-device", "pcie-root-port,id=sriov_rp,chassis=7", "-netdev", "user,id=sriov0,restrict=on",
       "-device", "igb,bus=sriov_rp,netdev=sriov0"]
MAC0, MAC1 = "02:00:00:10:ca:00", "02:00:00:10:ca:01"


@pytest.fixture(scope="module")
def node(guest_factory):
    return guest_factory("sriov", qemu_root=qemu10.build(), extra=IGB)


@pytest.fixture(scope="module")
def pf(node) -> dict:
    facts = node.facts()["facts"]
    (device,) = [d for d in facts["vfio_pci_devices"] if "%s:%s" % (d["vendor"], d["device"]) == PF_ID]
    return device


def sriov(node, pf, expect_failed=False, **wanted) -> dict:
    result = node.module("vfio.proxmox.sriov_vfs", {"pfs": [dict({"address": pf["address"], "id": PF_ID}, **wanted)]},
                         expect_failed=expect_failed)
    return result


def numvfs(node, pf) -> int:
    return int(node.sh("cat /sys/bus/pci/devices/%s/sriov_numvfs" % pf["address"]))


def test_1_discover_sees_the_pf_and_the_vfs_it_can_make(pf):
    assert pf["driver"] == "igb"
    assert (pf["sriov"]["total_vfs"], pf["sriov"]["num_vfs"]) == (7, 0)
    assert pf["iommu_group"] is not None


def test_2_two_vfs_configured_and_bound_to_vfio_pci_each_in_its_own_group(node, pf):
    settings = [{"index": 0, "mac": MAC0, "vlan": 10, "spoofchk": True}, {"index": 1, "mac": MAC1}]
    result = sriov(node, pf, vfs=2, vf_driver="vfio-pci", settings=settings)["results"][0]
    assert result["changed"] and "sriov_numvfs 2" in result["changes"], result
    assert [(v["id"], v["driver"], v["group_peers"]) for v in result["vfs"]] == [(VF_ID, "vfio-pci", [])] * 2
    assert len({v["iommu_group"] for v in result["vfs"]}) == 2
    assert result["problems"] == []
    interface = result["interface"]
    vfinfo = {v["vf"]: v for v in json.loads(node.sh("ip -j -d link show dev %s" % interface))[0]["vfinfo_list"]}
    assert (vfinfo[0]["address"], vfinfo[0]["vlan_list"][0]["vlan"], vfinfo[0]["spoofchk"]) == (MAC0, 10, True)
    assert vfinfo[1]["address"] == MAC1
    shown = node.sh("ip -d link show dev %s" % interface)
    assert "vf 0" in shown and MAC0 in shown and "vlan 10" in shown
    for vf in result["vfs"]:
        assert node.sh("test -c /dev/vfio/%s && echo yes" % vf["iommu_group"]).strip() == "yes"
    again = sriov(node, pf, vfs=2, vf_driver="vfio-pci", settings=settings)["results"][0]
    assert (again["changed"], again["changes"]) == (False, [])


def test_3_two_to_four_writes_zero_first(node, pf):
    result = sriov(node, pf, vfs=4, vf_driver="vfio-pci")["results"][0]
    assert result["changes"][:2] == ["sriov_numvfs 0 (from 2)", "sriov_numvfs 4"], result
    assert numvfs(node, pf) == 4
    assert [v["driver"] for v in result["vfs"]] == ["vfio-pci"] * 4


def test_4_a_count_change_is_refused_while_a_vf_is_held_open(node, pf):
    vf0 = node.sh("basename $(readlink /sys/bus/pci/devices/%s/virtfn0)" % pf["address"]).strip()
    group = node.sh("basename $(readlink /sys/bus/pci/devices/%s/iommu_group)" % vf0).strip()
    with node.holding_group(group) as pid:
        result = sriov(node, pf, expect_failed=True, vfs=2, vf_driver="vfio-pci")
        assert "%s is on vfio-pci and IOMMU group %s is in use by %s (python3 -c" % (vf0, group, pid) in result["msg"]
        assert numvfs(node, pf) == 4


def test_5_zero_removes_every_vf(node, pf):
    result = sriov(node, pf, vfs=0)["results"][0]
    assert result["changes"] == ["sriov_numvfs 0 (from 4)"]
    assert numvfs(node, pf) == 0
    assert node.sh("ls /sys/bus/pci/devices/%s | grep -c virtfn || true" % pf["address"]).strip() == "0"


def unit_state(node) -> str:
    """The boot unit's state, with its journal of this boot when it is not active (CI prints it)."""
    state = node.sh("systemctl is-active vfio-proxmox-sriov.service || true").strip()
    if state != "active":
        journal = ("journalctl -b --no-pager -o short-monotonic -u vfio-proxmox-sriov.service "
                   "-u systemd-udev-trigger.service | tail -40; true")
        state += "\n" + node.sh(journal)
    return state


def vfinfo(node, interface: str) -> dict:
    return {v["vf"]: v for v in json.loads(node.sh("ip -j -d link show dev %s" % interface))[0]["vfinfo_list"]}


def test_6_the_playbook_makes_them_now_and_again_at_every_boot(node, pf):
    wanted = {"passthrough_sriov": [{"address": pf["address"], "id": PF_ID, "vfs": 3, "vf_driver": "vfio-pci",
                                     "vf": [{"index": 0, "vlan": 10}]}]}
    node.playbook("vfio.proxmox.sriov", wanted)
    interface = pf["netdevs"][0]["name"]
    assert numvfs(node, pf) == 3
    macs = [vfinfo(node, interface)[i]["address"] for i in range(3)]
    assert len(set(macs)) == 3 and all(m.startswith("02:") for m in macs)
    node.reboot()
    # Made again by vfio-proxmox-sriov.service, with the same derived MACs, the VLAN, on vfio-pci.
    assert unit_state(node) == "active"
    assert numvfs(node, pf) == 3
    after = vfinfo(node, interface)
    assert [after[i]["address"] for i in range(3)] == macs
    assert after[0]["vlan_list"][0]["vlan"] == 10
    vfs = node.sh("for v in /sys/bus/pci/devices/%s/virtfn*; do basename $(readlink $v/driver); done" % pf["address"])
    assert vfs.split() == ["vfio-pci"] * 3
    assert "UP" in json.loads(node.sh("ip -j link show %s" % interface))[0]["flags"]
    out = node.playbook("vfio.proxmox.sriov", wanted)
    assert "changed=0" in out.split("PLAY RECAP", 1)[1]


def test_6b_a_restart_of_the_unit_leaves_a_vf_a_vm_holds_on_vfio_pci(node, pf):
    vf0 = node.sh("basename $(readlink /sys/bus/pci/devices/%s/virtfn0)" % pf["address"]).strip()
    group = node.sh("basename $(readlink /sys/bus/pci/devices/%s/iommu_group)" % vf0).strip()
    with node.holding_group(group) as pid:
        # Before issue 19 the script unbound it again (vfio-pci's remove then waits for the holder).
        node.sh("timeout 120 systemctl restart vfio-proxmox-sriov.service")
        assert unit_state(node) == "active"
        assert node.driver(vf0) == "vfio-pci"
        assert node.sh("kill -0 %s && echo alive" % pid).strip() == "alive"
    assert numvfs(node, pf) == 3


def test_6c_vf_driver_host_with_the_same_count_moves_the_vfs_now(node, pf):
    wanted = {"passthrough_sriov": [{"address": pf["address"], "id": PF_ID, "vfs": 3, "vf_driver": "host",
                                     "vf": [{"index": 0, "vlan": 10}]}]}
    node.playbook("vfio.proxmox.sriov", wanted)
    assert numvfs(node, pf) == 3
    vfs = node.sh("for v in /sys/bus/pci/devices/%s/virtfn*; do basename $(readlink $v/driver); done" % pf["address"])
    assert vfs.split() == ["igbvf"] * 3
    assert node.sh("cat /sys/bus/pci/devices/%s/sriov_drivers_autoprobe" % pf["address"]).strip() == "1"


def test_7_rollback_removes_the_vfs_the_unit_and_its_files(node, pf):
    node.playbook("vfio.proxmox.rollback")
    assert numvfs(node, pf) == 0
    files = ("/etc/vfio-proxmox/sriov.conf /usr/local/sbin/vfio-proxmox-sriov /etc/systemd/system/vfio-proxmox-sriov"
             ".service /etc/systemd/system/multi-user.target.wants/vfio-proxmox-sriov.service")
    assert node.sh("ls -d %s 2>/dev/null || true" % files).strip() == ""
