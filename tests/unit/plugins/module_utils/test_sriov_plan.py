"""passthrough_sriov planned from pci_facts of fake trees: counts, MACs, per-VF settings, every refusal."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import derived_mac, sriov_plan

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
    # The same count with the VFs left on their host driver changes nothing, so it is not refused. (The same
    # count with the default vf_driver none releases them from iavf: issue 19 - refused, see below.)
    assert sriov_plan(facts(fake_node, mutate=busy), [{"address": PF, "vfs": 2, "vf_driver": "host"}])["errors"] == []


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


# --- issue 19: every change that moves a VF is guarded, not only a count change -----------------
def _vf(profile, address):
    return next(d for d in profile["devices"] if d["address"] == address)


def test_vfio_pci_with_the_same_count_refuses_a_vf_that_carries_the_management_bridge_or_an_address(fake_node):
    def busy(profile):
        _vf(profile, "0000:04:02.0")["netdevs"][0].update(state="up", addresses=["198.51.100.7/24"])
        profile["interfaces"][0]["lowers"] = ["eno1", "enp4s0f0v1"]  # vmbr0, the management bridge
    plan = sriov_plan(facts(fake_node, mutate=busy), [{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    assert plan["apply"] == [] and len(plan["errors"]) == 1
    assert plan["errors"][0].startswith(
        "passthrough_sriov[0].vf_driver: 'vfio-pci' takes VFs of 0000:04:00.0 off their host driver now, and "
        "0000:04:02.0 (enp4s0f0v0, iavf) carries 198.51.100.7; 0000:04:02.1 (enp4s0f0v1, iavf) carries 192.0.2.60, "
        "vmbr0 - move that first, or keep vf_driver: host")
    # none releases them from iavf just the same
    plan = sriov_plan(facts(fake_node, mutate=busy), [{"address": PF, "vfs": 2, "vf_driver": "none"}])
    assert plan["errors"][0].startswith("passthrough_sriov[0].vf_driver: 'none' takes VFs of 0000:04:00.0 off")


def test_a_vf_holding_the_address_ansible_came_in_through_is_refused(fake_node):
    found = facts(fake_node)
    vf0 = next(d for d in found["vfio_pci_devices"] if d["address"] == "0000:04:02.0")
    vf0["netdevs"][0].update(management=True, management_reasons=["Ansible connects through 198.51.100.9"])
    plan = sriov_plan(found, [{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    assert plan["errors"] == [
        "passthrough_sriov[0].vf_driver: 'vfio-pci' takes VFs of 0000:04:00.0 off their host driver now, and "
        "0000:04:02.0 (enp4s0f0v0, iavf) carries the management path (Ansible connects through 198.51.100.9) - "
        "move that first, or keep vf_driver: host"]


def test_a_vf_move_is_refused_when_the_network_could_not_be_read(fake_node):
    found = facts(fake_node)
    found["vfio_host"]["network_error"] = "ip -j addr failed"
    plan = sriov_plan(found, [{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    assert plan["errors"] == [
        "passthrough_sriov[0].vf_driver: 'vfio-pci' takes VFs of 0000:04:00.0 off their host driver now, and "
        "0000:04:02.0 (enp4s0f0v0, iavf) carries what cannot be known: addresses and routes could not be read "
        "(ip -j addr failed); 0000:04:02.1 (enp4s0f0v1, iavf) carries what cannot be known: addresses and routes "
        "could not be read (ip -j addr failed) - move that first, or keep vf_driver: host"]


def test_host_with_the_same_count_refuses_a_vf_a_running_vm_holds(fake_node):
    def on_vfio(profile):
        for address in ("0000:04:02.0", "0000:04:02.1"):
            _vf(profile, address).update(driver="vfio-pci", netdevs=[])
    found = facts(fake_node, mutate=on_vfio)
    found["vfio_host"]["vfio_users"] = {"22": ["4242 (/usr/bin/kvm -id 101)"]}
    plan = sriov_plan(found, [{"address": PF, "vfs": 2, "vf_driver": "host"}])
    assert plan["errors"] == [
        "passthrough_sriov[0].vf_driver: 'host' takes VFs of 0000:04:00.0 from vfio-pci now, and 0000:04:02.1 is "
        "in use by 4242 (/usr/bin/kvm -id 101) (IOMMU group 22) - stop that VM first"]
    found["vfio_host"]["vfio_users"] = {}
    plan = sriov_plan(found, [{"address": PF, "vfs": 2, "vf_driver": "host"}])
    assert plan["errors"] == []
    assert plan["reasons"] == ["passthrough_sriov[0]: 0000:04:02.0, 0000:04:02.1 go from vfio-pci to the host's VF "
                               "driver now"]


def test_vfs_on_vfio_pci_do_not_move_or_go_when_who_holds_them_cannot_be_known(fake_node):
    def on_vfio(profile):
        for address in ("0000:04:02.0", "0000:04:02.1"):
            _vf(profile, address).update(driver="vfio-pci", netdevs=[])
    found = facts(fake_node, mutate=on_vfio)
    found["vfio_host"].update(vfio_users=None, vfio_users_error="/proc cannot be read (Permission denied)")
    unknown = "perhaps in use - who holds it cannot be known: /proc cannot be read (Permission denied)"
    moved = sriov_plan(found, [{"address": PF, "vfs": 2, "vf_driver": "host"}])
    assert moved["errors"] == [
        "passthrough_sriov[0].vf_driver: 'host' takes VFs of 0000:04:00.0 from vfio-pci now, and 0000:04:02.0 is "
        "%s (IOMMU group %s); 0000:04:02.1 is %s (IOMMU group 22) - stop that VM first" % (
            unknown, _group(found, "0000:04:02.0"), unknown)]
    recounted = sriov_plan(found, [{"address": PF, "vfs": 4, "vf_driver": "vfio-pci"}])
    assert len(recounted["errors"]) == 1
    assert "0000:04:02.1 is on vfio-pci and IOMMU group 22 is %s" % unknown in recounted["errors"][0]


def _group(found: dict, address: str) -> str:
    return next(d["iommu_group"] for d in found["vfio_pci_devices"] if d["address"] == address)


def test_vfs_already_where_the_plan_wants_them_are_no_move(fake_node):
    def busy(profile):
        _vf(profile, "0000:04:02.0")["netdevs"][0].update(state="up", addresses=["198.51.100.7/24"])
    assert sriov_plan(facts(fake_node, mutate=busy), [{"address": PF, "vfs": 2, "vf_driver": "host"}])["errors"] == []


# --- issue 19: a recorded PF whose card is gone does not stop every run ---------------------------
def test_a_recorded_pf_whose_card_is_gone_or_replaced_is_dropped_with_a_warning(fake_node):
    record = "pf 0000:09:00.0 8086:10c9 2 vfio-pci\npf 0000:04:00.0 8086:10fb 2 none\n"
    plan = sriov_plan(facts(fake_node), [], record=record)
    assert (plan["errors"], plan["apply"]) == ([], [])
    assert sorted(plan["warnings"]) == sorted([
        "0000:09:00.0 (8086:10c9) is in /etc/vfio-proxmox/sriov.conf but no longer on the node: its VFs went with "
        "the card; dropped from the boot configuration",
        "0000:04:00.0 was 8086:10fb in /etc/vfio-proxmox/sriov.conf and is 8086:1572 now - another card is in that "
        "slot and is not touched; dropped from the boot configuration"])
    assert sriov_plan(facts(fake_node), [], state="absent", record=record)["apply"] == []


# --- issue 19: a VF MAC that a NIC of the node already has is refused ----------------------------
@pytest.mark.parametrize(("mac", "owner"), [
    ("3c:fd:fe:00:04:00", "enp4s0f0np0 (0000:04:00.0)"),  # the PF's own
    ("3C:EC:EF:00:00:21", "eno1 (0000:00:1f.6)"),  # the management NIC's
])
def test_a_vf_mac_another_nic_of_the_node_has_is_refused(fake_node, mac, owner):
    plan = sriov_plan(facts(fake_node), [{"address": PF, "vfs": 2, "vf": [{"index": 1, "mac": mac}]}])
    assert plan["errors"] == ["passthrough_sriov[0].vf[0].mac: %r is already the MAC of %s on this node - two "
                              "NICs with one MAC break the network" % (mac, owner)]


def test_a_vf_that_already_has_its_mac_is_no_conflict(fake_node):
    # VF 0 carries 3e:00:00:04:02:00 in the fake tree; giving it that MAC again is fine, giving it to VF 1 is not.
    entry = {"address": PF, "vfs": 2, "vf": [{"index": 0, "mac": "3e:00:00:04:02:00"}]}
    assert sriov_plan(facts(fake_node), [entry])["errors"] == []
    entry = {"address": PF, "vfs": 2, "vf": [{"index": 1, "mac": "3e:00:00:04:02:00"}]}
    assert sriov_plan(facts(fake_node), [entry])["errors"] == [
        "passthrough_sriov[0].vf[0].mac: '3e:00:00:04:02:00' is already the MAC of enp4s0f0v0 (0000:04:02.0) on this "
        "node - two NICs with one MAC break the network"]
    # A count change destroys every VF of the PF: their MACs are free again.
    entry = {"address": PF, "vfs": 3, "vf": [{"index": 1, "mac": "3e:00:00:04:02:00"}]}
    assert sriov_plan(facts(fake_node), [entry])["errors"] == []


@pytest.mark.parametrize(("key", "item"), [
    ("vfs", {"vfs": "\u00b2"}),
    ("vf[0].index", {"vfs": 2, "vf": [{"index": "\u00b9"}]}),
    ("vf[0].vlan", {"vfs": 2, "vf": [{"index": 0, "vlan": "\u0663"}]}),
])
def test_a_number_in_another_script_is_refused_not_a_crash(fake_node, key, item):
    plan = sriov_plan(facts(fake_node), [dict({"address": PF}, **item)])
    assert len(plan["errors"]) == 1 and plan["errors"][0].startswith("passthrough_sriov[0].%s: " % key)
