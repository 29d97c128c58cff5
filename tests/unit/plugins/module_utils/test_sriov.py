"""sriov_vfs' engine on a fake tree, against the kernel/ip test double (tests/unit/sriov_double.py)."""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._sriov_vfs import Applier
from tests.unit.sriov_double import SriovKernel

PF = "0000:04:00.0"
PF_ID = "8086:1572"


def setup(fake_node, mutate=None):
    node = fake_node("sriov-x710", mutate=mutate)
    kernel = SriovKernel(node.roots["sysfs_root"])
    return node, kernel


def apply(node, kernel, check=False, **wanted):
    applier = Applier(node.roots["sysfs_root"], node.roots["procfs_root"], kernel.ip, check, kernel, settle=0.5)
    return applier.apply(dict({"address": PF, "id": PF_ID, "vf_driver": "none", "settings": []}, **wanted))


def test_the_double_refuses_one_count_over_another_as_the_kernel_does(fake_node):
    node, kernel = setup(fake_node)
    numvfs = os.path.join(node.roots["sysfs_root"], "bus", "pci", "devices", PF, "sriov_numvfs")
    with pytest.raises(OSError) as busy:
        kernel(numvfs, "4")
    assert busy.value.errno == errno.EBUSY


def test_two_to_four_writes_zero_first_applies_settings_binds_and_is_idempotent(fake_node):
    node, kernel = setup(fake_node)
    settings = [{"index": 0, "mac": "02:00:04:00:00:00", "vlan": 10, "spoofchk": True, "trust": False},
                {"index": 3, "mac": "02:00:04:00:00:03", "state": "enable"}]
    result = apply(node, kernel, vfs=4, vf_driver="vfio-pci", settings=settings)
    assert "refused" not in result, result
    numvfs = [w for w in kernel.writes if w[0].endswith("sriov_numvfs")]
    assert [v for _p, v in numvfs] == ["0", "4"]
    assert result["changes"][:4] == ["bring enp4s0f0np0 up", "sriov_drivers_autoprobe 0", "sriov_numvfs 0 (from 2)",
                                     "sriov_numvfs 4"]
    assert "enp4s0f0np0 vf 0 mac 02:00:04:00:00:00 vlan 10" in result["changes"]
    assert "enp4s0f0np0 vf 3 mac 02:00:04:00:00:03 state enable" in result["changes"]
    assert kernel.vf_state[PF][0] == {"address": "02:00:04:00:00:00", "vlan": 10, "spoofchk": True, "trust": False,
                                      "link_state": "auto"}
    assert [(v["index"], v["address"], v["driver"], v["group_peers"]) for v in result["vfs"]] == [
        (0, "0000:04:02.0", "vfio-pci", []), (1, "0000:04:02.1", "vfio-pci", []),
        (2, "0000:04:02.2", "vfio-pci", []), (3, "0000:04:02.3", "vfio-pci", [])]
    assert result["problems"] == []
    again = apply(node, kernel, vfs=4, vf_driver="vfio-pci", settings=settings)
    assert (again["changed"], again["changes"]) == (False, [])


def test_a_count_change_is_refused_while_a_vm_holds_a_vf_and_nothing_is_written(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    apply(node, kernel, vfs=2, vf_driver="vfio-pci")
    proc = node.roots["procfs_root"]
    group = os.path.basename(os.path.realpath(os.path.join(kernel.pci("devices", "0000:04:02.1"), "iommu_group")))
    os.makedirs(os.path.join(proc, "4242", "fd"))
    os.symlink("/dev/vfio/%s" % group, os.path.join(proc, "4242", "fd", "30"))
    with open(os.path.join(proc, "4242", "cmdline"), "wb") as handle:
        handle.write(b"/usr/bin/kvm\x00-id\x00101\x00")
    kernel.writes.clear()
    result = apply(node, kernel, vfs=4, vf_driver="vfio-pci")
    assert result["refused"] == (
        "changing the VF count of 0000:04:00.0 from 2 to 4 destroys every VF, and 0000:04:02.1 is on vfio-pci and "
        "IOMMU group %s is in use by 4242 (/usr/bin/kvm -id 101) - stop that VM or move that address first; nothing "
        "changed" % group)
    assert kernel.writes == [] and result["changed"] is False


def test_a_count_change_is_refused_while_a_vf_interface_holds_an_address(fake_node):
    node, kernel = setup(fake_node)
    kernel.addresses["enp4s0f0v0"] = ["198.51.100.7/24"]
    result = apply(node, kernel, vfs=0)
    assert result["refused"].startswith("changing the VF count of 0000:04:00.0 from 2 to 0 destroys every VF, and "
                                        "0000:04:02.0 (enp4s0f0v0) carries 198.51.100.7/24")
    assert kernel.writes == []


def test_check_mode_predicts_and_writes_nothing(fake_node):
    node, kernel = setup(fake_node)
    result = apply(node, kernel, check=True, vfs=4)
    assert result["changes"] == ["bring enp4s0f0np0 up", "sriov_drivers_autoprobe 0", "sriov_numvfs 0 (from 2)",
                                 "sriov_numvfs 4"]
    assert kernel.writes == [] and result["changed"] is True
    assert [c for c in kernel.ip_calls if c[:2] == ["link", "set"]] == []


def test_none_releases_vfs_a_host_driver_took_and_zero_removes_them(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    result = apply(node, kernel, vfs=2, vf_driver="none")
    assert result["changes"] == ["sriov_drivers_autoprobe 0", "VF 0 (0000:04:02.0) released from iavf",
                                 "VF 1 (0000:04:02.1) released from iavf"]
    assert [v["driver"] for v in result["vfs"]] == [None, None]
    result = apply(node, kernel, vfs=0)
    assert result["changes"] == ["sriov_numvfs 0 (from 2)"] and result["vfs"] == []
    assert not os.path.exists(kernel.pci("devices", "0000:04:02.0"))


def test_host_lets_the_vf_driver_probe_new_vfs(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    apply(node, kernel, vfs=0)
    result = apply(node, kernel, vfs=3, vf_driver="host")
    assert result["changes"] == ["sriov_drivers_autoprobe 1", "sriov_numvfs 3"]
    assert [v["driver"] for v in result["vfs"]] == ["iavf", "iavf", "iavf"]


@pytest.mark.parametrize(("wanted", "refused"), [
    ({"id": "8086:10c9", "vfs": 2}, "0000:04:00.0 is 8086:1572, expected 8086:10c9 - another card is in that slot; "
                                    "nothing touched"),
    ({"vfs": 33}, "0000:04:00.0 supports 32 VFs, 33 asked"),
    ({"address": "0000:09:00.0", "vfs": 1}, "0000:09:00.0: no such PCI device"),
    ({"address": "0000:00:1f.6", "id": "8086:1a1c", "vfs": 1}, "0000:00:1f.6 has no sriov_totalvfs: it cannot create "
                                                               "VFs"),
])
def test_what_cannot_be_done_is_refused_before_any_write(fake_node, wanted, refused):
    node, kernel = setup(fake_node)
    result = apply(node, kernel, **wanted)
    assert result["refused"] == refused
    assert kernel.writes == []


def test_a_vf_setting_the_driver_rejects_is_refused_with_ips_message(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    applier = Applier(node.roots["sysfs_root"], node.roots["procfs_root"], kernel.ip, False, kernel)
    result = applier.apply({"address": PF, "vfs": 2, "vf_driver": "none",
                            "settings": [{"index": 5, "mac": "02:00:00:00:00:05"}]})
    assert result["refused"] == ("ip link set dev enp4s0f0np0 vf 5 mac 02:00:00:00:00:05 failed (rc 2): RTNETLINK "
                                 "answers: Invalid argument")


# --- issue 19: a vf_driver change with the same count is guarded on the node too, and moves now ----
def hold_group(node, kernel, vf: str) -> str:
    proc = node.roots["procfs_root"]
    group = os.path.basename(os.path.realpath(os.path.join(kernel.pci("devices", vf), "iommu_group")))
    os.makedirs(os.path.join(proc, "4242", "fd"))
    os.symlink("/dev/vfio/%s" % group, os.path.join(proc, "4242", "fd", "30"))
    with open(os.path.join(proc, "4242", "cmdline"), "wb") as handle:
        handle.write(b"/usr/bin/kvm\x00-id\x00101\x00")
    return group


def test_vfio_pci_with_the_same_count_refuses_a_vf_whose_interface_holds_an_address_or_sits_in_a_bridge(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    kernel.addresses["enp4s0f0v0"] = ["198.51.100.7/24"]
    bridge = os.path.join(node.roots["sysfs_root"], "class", "net", "vmbr0")
    os.makedirs(bridge, exist_ok=True)
    os.symlink(bridge, os.path.join(kernel.pci("devices", "0000:04:02.1"), "net", "enp4s0f0v1", "master"))
    for driver in ("vfio-pci", "none"):
        result = apply(node, kernel, vfs=2, vf_driver=driver)
        assert result["refused"] == (
            "vf_driver %s takes the VFs of 0000:04:00.0 off their host driver, and 0000:04:02.0 (enp4s0f0v0) carries "
            "198.51.100.7/24; 0000:04:02.1 (enp4s0f0v1) carries vmbr0 - move that first; nothing changed" % driver)
        assert kernel.writes == [] and result["changed"] is False


def test_host_with_the_same_count_moves_the_vfs_back_now_and_not_from_a_running_vm(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    apply(node, kernel, vfs=2, vf_driver="vfio-pci")
    group = hold_group(node, kernel, "0000:04:02.1")
    kernel.writes.clear()
    result = apply(node, kernel, vfs=2, vf_driver="host")
    assert result["refused"] == ("vf_driver host takes the VFs of 0000:04:00.0 from vfio-pci, and 0000:04:02.1 is in "
                                 "use by 4242 (/usr/bin/kvm -id 101) (IOMMU group %s) - stop that VM first; nothing "
                                 "changed" % group)
    assert kernel.writes == []
    os.unlink(os.path.join(node.roots["procfs_root"], "4242", "fd", "30"))
    result = apply(node, kernel, vfs=2, vf_driver="host")
    assert "refused" not in result, result
    assert result["changes"] == ["sriov_drivers_autoprobe 1", "VF 0 (0000:04:02.0) to the host driver: released",
                                 "VF 1 (0000:04:02.1) to the host driver: released"]
    assert [v["driver"] for v in result["vfs"]] == ["iavf", "iavf"]
    again = apply(node, kernel, vfs=2, vf_driver="host")
    assert (again["changed"], again["changes"]) == (False, [])


def test_host_probes_vfs_that_none_left_without_a_driver(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    apply(node, kernel, vfs=2, vf_driver="none")
    result = apply(node, kernel, vfs=2, vf_driver="host")
    assert result["changes"] == ["sriov_drivers_autoprobe 1", "VF 0 (0000:04:02.0) to the host driver: probed",
                                 "VF 1 (0000:04:02.1) to the host driver: probed"]
    assert [v["driver"] for v in result["vfs"]] == ["iavf", "iavf"]


# --- issue 19: removing the VFs of a card that is gone converges --------------------------------
def test_zero_vfs_on_a_card_that_is_gone_is_nothing_to_do(fake_node):
    node, kernel = setup(fake_node)
    result = apply(node, kernel, address="0000:09:00.0", vfs=0)
    assert "refused" not in result
    assert (result["changed"], result["changes"], result["gone"]) == (False, [], True)
    assert kernel.writes == []


def test_a_vf_move_or_count_change_is_refused_when_procfs_cannot_be_read(fake_node):
    node, kernel = setup(fake_node)
    kernel.up.add("enp4s0f0np0")
    applier = Applier(node.roots["sysfs_root"], os.path.join(node.roots["procfs_root"], "missing"), kernel.ip, False,
                      kernel, settle=0.5)
    for wanted in ({"vfs": 4, "vf_driver": "none"}, {"vfs": 2, "vf_driver": "host"}):
        result = applier.apply(dict({"address": PF, "id": PF_ID, "settings": []}, **wanted))
        assert result["refused"].startswith("cannot tell which VFs a running VM holds: ")
        assert result["refused"].endswith("missing cannot be read (No such file or directory); nothing changed")
    assert kernel.writes == []
