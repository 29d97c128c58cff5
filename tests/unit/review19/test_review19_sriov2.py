"""Review 19, second round (adversarial): SR-IOV on the fake sriov-x710 node - per-VF settings changed live under
a VM or the management path, VFs on userspace I/O drivers, sysfsutils setting the same VF count at boot, MAC
collisions the check missed, a count change on the corosync link. Each test failed before the change that
brought it (its docstring names the harm); the ones marked "holds" passed already."""

from __future__ import annotations

import copy
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._sriov_vfs import Applier
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._sysfs_conf import parse_sysfs_conf
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import SRIOV_CONF, derived_mac
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import STATE_RECORD
from tests.unit.review19.review19_helpers import (
    CONF,
    PF,
    SECTION,
    VF0,
    VF1,
    device,
    facts,
    inputs,
    on_node,
    state_json,
    vfs_in_a_running_vm,
)
from tests.unit.sriov_double import SriovKernel


def vf0_on_the_management_bridge(fake_node) -> dict:
    def bridge_on_vf0(profile):
        profile["interfaces"][0]["lowers"] = ["enp4s0f0v0"]  # vmbr0, the management bridge (default route)
        next(d for d in profile["devices"] if d["address"] == VF0)["netdevs"][0]["state"] = "up"
    found = facts(fake_node, mutate=bridge_on_vf0)
    assert device(found, VF0)["netdevs"][0]["management"]
    return found


def named(plan: dict, *words: str) -> list[str]:
    return [e for e in plan["errors"] if all(w in e for w in words)]


def gathered(node) -> dict:
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


# --- 1. per-VF settings changed live under a VM or on the management path ----------------------------------
def test_a_new_mac_for_the_vf_a_running_vm_holds_is_refused(fake_node):
    """Same count, a new MAC for VF 1 while VM 101 runs on it: `ip link set PF vf 1 mac` changed the guest's MAC
    under it (its network broke) - only count and driver changes ran the guards."""
    wanted = inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci",
                            "vf": [{"index": 1, "mac": "02:aa:bb:cc:dd:01"}]}])
    plan = plan_node(vfs_in_a_running_vm(fake_node), wanted)
    assert named(plan, VF1, "mac 02:aa:bb:cc:dd:01 (now 02:00:04:00:00:01)", "4242"), plan["errors"]
    assert len(plan["errors"]) == 1  # VF 0 is free: its MAC may change


def test_a_vlan_on_the_vf_carrying_the_management_bridge_is_refused(fake_node):
    """A VLAN set live on the VF under vmbr0 (the default route) drops the operator's connection mid-run."""
    wanted = inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "host", "vf": [{"index": 0, "vlan": 10}]}])
    plan = plan_node(vf0_on_the_management_bridge(fake_node), wanted)
    assert named(plan, VF0, "vlan 10 (now 0)", "management path"), plan["errors"]


def test_trust_and_spoofchk_under_a_running_vm_are_refused_too(fake_node):
    wanted = inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci",
                            "vf": [{"index": 1, "trust": True, "spoofchk": False}]}])
    plan = plan_node(vfs_in_a_running_vm(fake_node), wanted)
    assert named(plan, VF1, "trust on (now off)", "spoofchk off (now on)", "4242"), plan["errors"]


def test_settings_that_cannot_be_read_count_as_changes_for_a_busy_vf(fake_node):
    """Fail closed: `ip -d link` could not be read, so VF 1's MAC is unknown - setting one under VM 101 is
    refused, with the reason."""
    found = vfs_in_a_running_vm(fake_node)
    device(found, PF)["sriov"].update(vf_settings=None, vf_settings_error="ip -j -d link show failed")
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]))
    assert named(plan, VF1, "now unknown", "cannot be read (ip -j -d link show failed)", "4242"), plan["errors"]


def test_holds_settings_already_in_place_are_no_change_under_a_running_vm(fake_node):
    """Holds: the derived MACs are what the VFs have (and vf_macs: keep asks nothing) - not refused."""
    found = vfs_in_a_running_vm(fake_node)
    assert plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]))["errors"] == []
    found["vfio_host"]["corosync_addresses"] = []
    device(found, PF)["sriov"].update(vf_settings=None, vf_settings_error="ip failed")
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci", "vf_macs": "keep"}]))
    assert plan["errors"] == []


def test_discovery_reads_each_vfs_settings_and_says_when_it_cannot(fake_node):
    node = fake_node("sriov-x710")
    assert [s["mac"] for s in device(gathered(node), PF)["sriov"]["vf_settings"]] == [
        "02:00:04:00:00:00", "02:00:04:00:00:01"]
    node.commands["ip -j -d link show"] = "not json"
    sriov = device(gathered(node), PF)["sriov"]
    assert sriov["vf_settings"] is None and "ip -j -d link show" in sriov["vf_settings_error"]


# --- 2. VFs on a userspace I/O driver (DPDK) ----------------------------------------------------------------
def vf1_on(fake_node, driver: str) -> dict:
    found = facts(fake_node)
    device(found, VF1).update(driver=driver, netdevs=[])
    return found


def test_a_count_change_destroys_a_vf_on_uio_pci_generic_without_a_refusal(fake_node):
    """VF 1 is on uio_pci_generic (a DPDK process holds /dev/uio0, which no fact shows): changing the count
    destroyed it under that process."""
    plan = plan_node(vf1_on(fake_node, "uio_pci_generic"), inputs(sriov=[{"address": PF, "vfs": 4}]))
    assert named(plan, VF1, "uio_pci_generic", "userspace I/O"), plan["errors"]


def test_moving_a_vf_off_igb_uio_is_refused(fake_node):
    """vf_driver vfio-pci with the same count unbinds VF 1 from igb_uio now - under the DPDK process."""
    plan = plan_node(vf1_on(fake_node, "igb_uio"), inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]))
    assert named(plan, VF1, "igb_uio", "userspace I/O"), plan["errors"]


def test_removing_the_vfs_of_a_pf_with_a_vf_on_uio_is_refused(fake_node):
    seen = {STATE_RECORD: state_json(sriov=SECTION), SRIOV_CONF: on_node(SRIOV_CONF, CONF)}
    plan = plan_node(vf1_on(fake_node, "uio_pci_generic"), inputs(state="absent"), seen)
    assert named(plan, VF1, "uio_pci_generic"), plan["errors"]


# --- 3. sysfsutils sets the same VF count at every boot -----------------------------------------------------
def node_with(fake_node, files: dict):
    node = fake_node("sriov-x710")
    for relative, text in files.items():
        path = os.path.join(node.roots["etc_root"], relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return node


def test_a_pf_whose_count_sysfs_conf_sets_at_boot_is_refused_naming_the_line(fake_node):
    """/etc/sysfs.conf writes sriov_numvfs of the PF at every boot and the role's unit writes it too: at boot the
    two fight (EBUSY, or the last one wins) - nothing said before."""
    node = node_with(fake_node, {"etc/sysfs.conf": "# sysfsutils\n\nbus/pci/devices/0000:04:00.0/sriov_numvfs = 2\n"})
    plan = plan_node(gathered(node), inputs(sriov=[{"address": PF, "vfs": 2}]))
    assert named(plan, "/etc/sysfs.conf:3", PF, "sysfsutils"), plan["errors"]


def test_a_sysfs_d_line_by_interface_name_is_refused_too(fake_node):
    node = node_with(fake_node, {"etc/sysfs.d/10-sriov.conf": "mode class/net/x = 0600\r\n"
                                                              "class/net/enp4s0f0np0/device/sriov_numvfs 4"})
    plan = plan_node(gathered(node), inputs(sriov=[{"interface": "enp4s0f0np0", "vfs": 2}]))
    assert named(plan, "/etc/sysfs.d/10-sriov.conf:2", PF), plan["errors"]


def test_a_commented_or_another_pfs_sysfs_conf_line_is_no_conflict(fake_node):
    node = node_with(fake_node, {"etc/sysfs.conf": "#bus/pci/devices/0000:04:00.0/sriov_numvfs = 2\n"
                                                   "bus/pci/devices/0000:05:00.0/sriov_numvfs = 2 # other card\n"})
    found = gathered(node)
    assert [line["line"] for line in found["vfio_host"]["sysfs_conf_numvfs"]] == [2]
    assert plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2}]))["errors"] == []


def test_a_sysfs_conf_that_cannot_be_read_refuses_the_pf_with_the_reason(fake_node):
    """Fail closed: whether sysfsutils sets the count cannot be known, so the PF is not managed."""
    node = fake_node("sriov-x710")
    os.makedirs(os.path.join(node.roots["etc_root"], "etc", "sysfs.conf"))  # a directory: unreadable
    plan = plan_node(gathered(node), inputs(sriov=[{"address": PF, "vfs": 2}]))
    assert named(plan, PF, "cannot be known", "cannot read /etc/sysfs.conf"), plan["errors"]


ATTRIBUTE = st.text(st.characters(blacklist_characters=" \t\r\n\v\f#="), min_size=1, max_size=30)
VALUE = ATTRIBUTE
NOISE = st.text(max_size=200)


@given(NOISE)
def test_the_parser_takes_any_text_and_crlf_reads_as_lf(text):
    found = parse_sysfs_conf(text)
    lines = text.split("\n")
    for number, attribute, value in found:
        assert 1 <= number <= len(lines)
        assert "#" not in attribute + value and not set(attribute + value) & set(" \t\r\v\f")
    assert parse_sysfs_conf(text.replace("\n", "\r\n")) == found


@given(st.lists(st.one_of(st.just(""), st.text(st.characters(blacklist_characters="\n"), max_size=40).map(
    lambda t: "#" + t)), max_size=8), ATTRIBUTE, VALUE, st.sampled_from([" = ", "=", " ", "\t=\t"]),
    st.sampled_from(["", " # why", "\r"]), st.booleans())
def test_a_setting_among_comments_is_found_at_its_line(comments, attribute, value, separator, tail, final_newline):
    lines = comments + ["  %s%s%s%s" % (attribute, separator, value, tail)] + comments
    text = "\n".join(lines) + ("\n" if final_newline else "")
    assert parse_sysfs_conf(text) == [(len(comments) + 1, attribute, value)]


# --- 4. MAC collisions the check missed ---------------------------------------------------------------------
def with_second_pf(found: dict, pf_mac: str, vf_mac: str) -> dict:
    """Another X710 port, 0000:05:00.0 (another OUI), not in passthrough_sriov, its VF on vfio-pci (no interface)
    carrying vf_mac - known only from the PF's VF settings."""
    pf = copy.deepcopy(device(found, PF))
    pf.update(address="0000:05:00.0", iommu_group="30", netdevs=[dict(pf["netdevs"][0], name="enp5s0f0np0",
                                                                      mac=pf_mac, permanent_mac=None)])
    pf["sriov"].update(num_vfs=1, vfs=["0000:05:02.0"],
                       vf_settings=[{"index": 0, "mac": vf_mac, "vlan": 0, "spoofchk": True, "trust": False,
                                     "state": "auto"}])
    vf = copy.deepcopy(device(found, VF0))
    vf.update(address="0000:05:02.0", driver="vfio-pci", iommu_group="31", netdevs=[])
    vf["sriov"]["physfn"] = "0000:05:00.0"
    found["vfio_pci_devices"] += [pf, vf]
    return found


def test_a_derived_mac_equal_to_a_vf_of_another_pf_on_vfio_pci_is_refused(fake_node):
    """The other port's VF (on vfio-pci, in a VM) has 02:00:04:00:00:02 - what this PF derives for its VF 2 (the
    derivation drops the OUI). The check only knew interfaces, so two VFs on one network got one MAC."""
    found = with_second_pf(facts(fake_node), "a0:36:9f:00:04:00", derived_mac("3c:fd:fe:00:04:00", 2))
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 3}]))
    assert named(plan, "02:00:04:00:00:02", "0000:05:02.0"), plan["errors"]


def test_an_explicit_mac_equal_to_a_bridges_mac_is_refused(fake_node):
    """vmbr0's MAC (set with hwaddress in /etc/network/interfaces) is not the MAC of any PCI function: a VF given it
    collided with the management bridge."""
    found = facts(fake_node)
    found["vfio_host"]["link_macs"]["vmbr0"] = "02:42:00:00:00:01"
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf": [{"index": 1, "mac": "02:42:00:00:00:01"}]}]))
    assert named(plan, "02:42:00:00:00:01", "vmbr0"), plan["errors"]


def test_vf_macs_are_refused_when_the_links_macs_could_not_be_read(fake_node):
    """Found by the review of this fix: with `ip -d link` failing, link_macs was null and a VF given a bridge's MAC
    passed. Fail closed: the MAC is refused with the reason."""
    found = facts(fake_node)
    found["vfio_host"].update(link_macs=None, link_macs_error="ip -j -d link show failed (rc 1)")
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf": [{"index": 1, "mac": "02:42:00:00:00:01"}]}]))
    assert named(plan, "MACs of the node's links are unknown (ip -j -d link show failed (rc 1))"), plan["errors"]
    assert not plan.get("act")


def test_holds_two_pfs_of_different_ouis_deriving_one_mac_are_refused(fake_node):
    """Holds: two planned ports whose MACs end alike derive the same VF MACs - refused as given twice."""
    found = with_second_pf(facts(fake_node), "a0:36:9f:00:04:00", "02:99:00:00:00:00")
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2}, {"address": "0000:05:00.0", "vfs": 1}]))
    assert named(plan, "02:00:04:00:00:00", "already given to passthrough_sriov[0] VF 0"), plan["errors"]


# --- 5. a count change on the corosync link -----------------------------------------------------------------
def corosync_on_the_pf(profile):
    next(d for d in profile["devices"] if d["address"] == PF)["netdevs"][0].update(
        state="up", addresses=["10.10.10.60/24"])


def test_a_count_change_on_the_pf_carrying_corosync_warns_naming_the_link(fake_node):
    """i40e resets the port while VFs are created: corosync on it drops, the node can leave the cluster (HA fences
    it) - the plan said nothing."""
    found = facts(fake_node, mutate=corosync_on_the_pf)
    found["vfio_host"]["corosync_addresses"] = ["10.10.10.60", "10.10.20.60"]
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 4}]))
    assert plan["errors"] == []
    assert [w for w in plan["warnings"] if PF in w and "corosync link 10.10.10.60 " in w], plan["warnings"]


def test_an_unreadable_corosync_conf_is_said_in_the_warning(fake_node):
    node = fake_node("sriov-x710", mutate=corosync_on_the_pf)
    os.makedirs(os.path.join(node.roots["etc_root"], "etc", "pve", "corosync.conf"))  # a directory: unreadable
    found = gathered(node)
    assert found["vfio_host"]["corosync_error"] == "cannot read /etc/pve/corosync.conf"
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 4}]))
    assert [w for w in plan["warnings"] if PF in w and "cannot read /etc/pve/corosync.conf" in w], plan["warnings"]


def test_corosyncs_own_conf_is_read_when_pmxcfs_is_not_mounted(fake_node):
    node = node_with(fake_node, {"etc/corosync/corosync.conf": "nodelist {\n  node {\n    ring0_addr: 10.10.10.60\n"
                                                               "  }\n}\n"})
    assert gathered(node)["vfio_host"]["corosync_addresses"] == ["10.10.10.60"]


def test_holds_the_same_count_on_the_corosync_pf_is_no_warning(fake_node):
    found = facts(fake_node, mutate=corosync_on_the_pf)
    found["vfio_host"]["corosync_addresses"] = ["10.10.10.60"]
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "host"}]))
    assert plan["errors"] == [] and not [w for w in plan["warnings"] if "corosync" in w]


# --- the same guards again on the node (sriov_vfs), before the first write ----------------------------------
def applied(node, kernel, **wanted) -> dict:
    applier = Applier(node.roots["sysfs_root"], node.roots["procfs_root"], kernel.ip, False, kernel, settle=0.5)
    return applier.apply(dict({"address": PF, "id": "8086:1572", "vf_driver": "vfio-pci", "settings": []}, **wanted))


def vm_holds_vf1(node, kernel) -> str:
    proc = node.roots["procfs_root"]
    group = os.path.basename(os.path.realpath(os.path.join(kernel.pci("devices", VF1), "iommu_group")))
    os.makedirs(os.path.join(proc, "4242", "fd"))
    os.symlink("/dev/vfio/%s" % group, os.path.join(proc, "4242", "fd", "30"))
    with open(os.path.join(proc, "4242", "cmdline"), "wb") as handle:
        handle.write(b"/usr/bin/kvm\x00-id\x00101\x00")
    return group


def test_sriov_vfs_refuses_a_new_mac_under_a_running_vm_and_writes_nothing(fake_node):
    """The planner's facts may be old: sriov_vfs set VF 1's MAC under VM 101 (only counts and drivers were checked
    on the node)."""
    node = fake_node("sriov-x710")
    kernel = SriovKernel(node.roots["sysfs_root"])
    kernel.up.add("enp4s0f0np0")
    assert "refused" not in applied(node, kernel, vfs=2)
    group = vm_holds_vf1(node, kernel)
    kernel.writes.clear()
    kernel.ip_calls.clear()
    result = applied(node, kernel, vfs=2, settings=[{"index": 0, "vlan": 5}, {"index": 1, "mac": "02:aa:00:00:00:01"}])
    assert result["refused"] == (
        "setting VFs of 0000:04:00.0 live: VF 1 (0000:04:02.1) would get mac 02:aa:00:00:00:01, and IOMMU group %s is "
        "in use by 4242 (/usr/bin/kvm -id 101) - stop that VM or move that address first; nothing changed" % group)
    assert kernel.writes == [] and [c for c in kernel.ip_calls if c[:2] == ["link", "set"]] == []
    same = applied(node, kernel, vfs=2, settings=[{"index": 1, "vlan": 0}])  # what it has: no change
    assert "refused" not in same, same


def test_sriov_vfs_refuses_a_count_change_with_a_vf_on_uio_pci_generic(fake_node):
    node = fake_node("sriov-x710")
    kernel = SriovKernel(node.roots["sysfs_root"])
    kernel._bind(VF1, "uio_pci_generic")
    result = applied(node, kernel, vfs=4)
    assert VF1 in result["refused"] and "uio_pci_generic" in result["refused"], result
    assert kernel.writes == []
    moved = applied(node, kernel, vfs=2)
    assert "uio_pci_generic" in moved["refused"] and kernel.writes == [], moved


# --- a converged run does not go to the node for a PF already as planned ------------------------------------
def test_a_pf_already_as_planned_is_not_given_to_sriov_vfs(fake_node):
    """Found by the review of the task count: every run with SR-IOV called sriov_vfs (act true on every converged
    run). The profile's PF has 2 VFs on iavf with the derived MACs: nothing to apply."""
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "host"}]))
    assert plan["errors"] == [] and plan["sriov"]["pfs"] and plan["sriov"]["apply"] == []
    assert plan["sriov"]["live"] is False


@pytest.mark.parametrize("wanted", [{"vfs": 3, "vf_driver": "host"}, {"vfs": 2, "vf_driver": "vfio-pci"},
                                    {"vfs": 2, "vf_driver": "host", "vf": [{"index": 1, "mac": "02:aa:00:00:00:01"}]},
                                    {"vfs": 2, "vf_driver": "host", "vf": [{"index": 0, "vlan": 10}]}])
def test_a_pf_with_anything_not_as_planned_is_given_to_sriov_vfs(fake_node, wanted):
    plan = plan_node(facts(fake_node), inputs(sriov=[dict(wanted, address=PF)]))
    assert [pf["address"] for pf in plan["sriov"]["apply"]] == [PF], plan["errors"]


def test_a_pf_whose_vf_settings_cannot_be_read_is_given_to_sriov_vfs(fake_node):
    found = facts(fake_node)
    device(found, PF)["sriov"].update(vf_settings=None, vf_settings_error="ip -j -d link show failed")
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "host"}]))
    assert [pf["address"] for pf in plan["sriov"]["apply"]] == [PF]
