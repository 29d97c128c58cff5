"""passthrough_sriov planned from pci_facts of fake trees: counts, MACs, per-VF settings, every refusal."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils._sriov_plan import derived_mac, sriov_plan

PF = "0000:04:00.0"


def facts(fake_node, profile="sriov-x710", mutate=None):
    node = fake_node(profile, mutate=mutate)
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def test_a_pf_by_interface_gets_derived_macs_and_its_settings(fake_node):
    plan = sriov_plan(facts(fake_node), [{"interface": "enp4s0f0np0", "id": "8086:1572", "vfs": 2,
                                          "vf_driver": "vfio-pci", "vf": [{"index": 1, "vlan": 20, "trust": "no",
                                                                           "spoofchk": True, "state": "enable"}]}])
    assert plan["errors"] == []
    (pf,) = plan["pfs"]
    assert (pf["address"], pf["interface"], pf["vfs"], pf["current_vfs"], pf["count_changes"]) == (
        PF, "enp4s0f0np0", 2, 2, False)
    assert pf["settings"] == [
        {"index": 0, "mac": "02:00:04:00:00:00"},
        {"index": 1, "vlan": 20, "trust": False, "spoofchk": True, "state": "enable", "mac": "02:00:04:00:00:01"}]


def test_derived_macs_are_stable_unicast_and_apart_for_two_ports():
    assert derived_mac("3C:FD:FE:00:04:00", 0) == "02:00:04:00:00:00"
    assert derived_mac("3c:fd:fe:00:04:00", 300) == "02:00:04:00:01:2c"
    assert derived_mac("3c:fd:fe:00:04:01", 0) != derived_mac("3c:fd:fe:00:04:00", 1)


@pytest.mark.parametrize(("entry", "error"), [
    ({"interface": "enp4s0f0np0", "vfs": 33},
     "passthrough_sriov[0].vfs: 33 is more than the 32 VFs 0000:04:00.0 supports (sriov_totalvfs)"),
    ({"interface": "enp4s0f0np0", "vfs": "four"}, "passthrough_sriov[0].vfs: 'four' is not a number of VFs (0 to "
                                                  "disable)"),
    ({"interface": "enp4s0f0np0", "vfs": 2, "id": "8086:10c9"},
     "passthrough_sriov[0].id: '8086:10c9', but 0000:04:00.0 is 8086:1572 - another card is in that slot"),
    ({"interface": "eno1", "vfs": 2}, "passthrough_sriov[0]: 0000:00:1f.6 (8086:1a1c, Ethernet controller) does not "
                                      "support SR-IOV - it has no sriov_totalvfs (the card, its firmware or its driver "
                                      "e1000e cannot create VFs)"),
    ({"address": "0000:04:02.0", "vfs": 1}, "passthrough_sriov[0]: 0000:04:02.0 is itself a virtual function of "
                                            "0000:04:00.0"),
    ({"interface": "enp4s0f0np0", "vfs": 2, "vf_driver": "igbvf"},
     "passthrough_sriov[0].vf_driver: 'igbvf' is not one of none, vfio-pci, host"),
    ({"interface": "enp4s0f0np0", "vfs": 2, "vf": [{"index": 2}]},
     "passthrough_sriov[0].vf[0].index: 2 is not a VF index below vfs (2)"),
    ({"interface": "enp4s0f0np0", "vfs": 2, "vf": [{"index": 0, "mac": "01:00:5e:00:00:01"}]},
     "passthrough_sriov[0].vf[0].mac: '01:00:5e:00:00:01' is not a unicast MAC address (aa:bb:cc:dd:ee:ff, not all "
     "zero, lowest bit of the first byte clear)"),
    ({"interface": "enp4s0f0np0", "vfs": 2, "vf": [{"index": 0, "vlan": 4095}]},
     "passthrough_sriov[0].vf[0].vlan: 4095 is not a VLAN ID (1 to 4094, 0 for none)"),
    ({"interface": "enp4s0f0np0", "vfs": 2, "vf": [{"index": 0, "trust": "maybe"}]},
     "passthrough_sriov[0].vf[0].trust: 'maybe' is not a boolean (use true or false)"),
    ({"interface": "enp4s0f0np0", "vfs": 2,
      "vf": [{"index": 0, "mac": "02:00:00:00:00:01"}, {"index": 1, "mac": "02:00:00:00:00:01"}]},
     "passthrough_sriov[0]: VF 1 would get MAC 02:00:00:00:00:01, already given to passthrough_sriov[0] VF 0"),
    ({"interface": "enp4s0f0np0", "vfs": 2, "colour": "red"},
     "passthrough_sriov[0]: unknown key(s) colour (allowed: address, interface, mac, id, vfs, vf_driver, vf_macs, vf)"),
    ({"vfs": 2}, "passthrough_sriov[0]: needs exactly one of address, interface, mac to name the physical function, "
                 "got none"),
])
def test_every_bad_input_is_refused_naming_the_variable_and_the_value(fake_node, entry, error):
    plan = sriov_plan(facts(fake_node), [entry])
    assert plan["errors"] == [error]
    assert plan["pfs"] == []


def test_a_pf_that_is_also_passed_through_is_refused(fake_node):
    plan = sriov_plan(facts(fake_node), [{"address": PF, "vfs": 2}], selected={PF})
    assert plan["errors"] == ["passthrough_sriov[0]: 0000:04:00.0 is also in passthrough_devices - a physical "
                              "function with VFs stays on the host; pass its VFs instead"]


def test_vfio_pci_for_vfs_needs_the_iommu(fake_node):
    def off(profile):
        profile["iommu"] = False
    plan = sriov_plan(facts(fake_node, mutate=off), [{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    assert plan["errors"] == ["passthrough_sriov[0].vf_driver: vfio-pci, but the IOMMU is not active - VFs cannot go "
                              "to VMs; enable VT-d/AMD-Vi first"]


def test_a_count_change_is_refused_while_a_vf_carries_an_address_or_sits_in_a_bridge(fake_node):
    def busy(profile):
        vf0 = next(d for d in profile["devices"] if d["address"] == "0000:04:02.0")
        vf0["netdevs"][0].update(state="up", addresses=["198.51.100.7/24"])
        profile["interfaces"].append({"name": "vmbr9", "kind": "bridge", "lowers": ["enp4s0f0v1"]})
    plan = sriov_plan(facts(fake_node, mutate=busy), [{"address": PF, "vfs": 4}])
    assert len(plan["errors"]) == 1
    assert plan["errors"][0] == (
        "passthrough_sriov[0]: changing the VF count of 0000:04:00.0 from 2 to 4 destroys every VF, and "
        "0000:04:02.0 (enp4s0f0v0) carries 198.51.100.7; 0000:04:02.1 (enp4s0f0v1) carries vmbr9 - stop that VM or "
        "move that address first")
    # The same count changes nothing, so it is not refused.
    assert sriov_plan(facts(fake_node, mutate=busy), [{"address": PF, "vfs": 2}])["errors"] == []


def test_vfs_on_the_management_pf_are_allowed_with_a_warning_for_a_count_change(fake_node):
    def manage(profile):
        profile["interfaces"][0]["lowers"] = ["enp4s0f0np0"]
    plan = sriov_plan(facts(fake_node, mutate=manage), [{"address": PF, "vfs": 4}])
    assert plan["errors"] == []
    assert plan["warnings"] == ["passthrough_sriov[0]: changing the VF count of 0000:04:00.0, which carries the "
                                "management path - some drivers reset the port for a moment while VFs are created"]


def test_nothing_asked_is_nothing_planned_and_a_string_is_refused(fake_node):
    assert sriov_plan(facts(fake_node), [])["pfs"] == []
    assert sriov_plan(facts(fake_node), "enp4s0f0np0=4")["errors"] == [
        "passthrough_sriov: 'enp4s0f0np0=4' is not a list of mappings, for example [{interface: enp1s0, vfs: 4}]"]
