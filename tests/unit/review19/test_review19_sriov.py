"""Review 19 (adversarial): SR-IOV (passthrough_sriov) planned by the real planner from pci_facts of the fake
sriov-x710 node. A test marked "holds" passes: the engine already protects the admin. Every other test fails
for the defect its docstring names (and would pass once it is fixed). The ones still failing stay on branch
review19 until fixed; the ones here hold, or were fixed in the same change (their docstrings name the harm)."""

from __future__ import annotations

import copy

from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import SRIOV_CONF
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import STATE_RECORD
from tests.unit.review19.review19_helpers import (
    CONF,
    PF,
    SECTION,
    VF0,
    VF1,
    VM,
    device,
    facts,
    inputs,
    on_node,
    state_json,
    vfs_in_a_running_vm,
)


def named(plan: dict, *words: str) -> list[str]:
    return [e for e in plan["errors"] if all(w in e for w in words)]


# --- FAILS: the VFs a VM runs on are destroyed by a rollback or by dropping the PF ----------------------------
def test_rollback_destroys_the_vf_a_running_vm_uses_without_a_refusal(fake_node):
    """`passthrough_state: absent` yanks the NIC out of running VM 101 (its VF is destroyed), and the rollback
    removes state.json and sriov.conf first, so the next rollback no longer knows the PF had VFs."""
    seen = {STATE_RECORD: state_json(sriov=SECTION), SRIOV_CONF: on_node(SRIOV_CONF, CONF)}
    plan = plan_node(vfs_in_a_running_vm(fake_node), inputs(state="absent"), seen)
    assert plan["sriov"]["apply"][0]["vfs"] == 0  # the plan sets the PF to 0 VFs
    # Expected: refused before any write, naming the VF and the VM - as a count change is (README "Changing the count").
    assert named(plan, VF1, "4242"), plan["errors"]


def test_dropping_a_pf_from_passthrough_sriov_destroys_the_vf_a_running_vm_uses(fake_node):
    """The admin removes a port from passthrough_sriov; the next run sets its VFs to 0 under running VM 101,
    with no refusal (the count-change guard does not run for a released PF)."""
    seen = {STATE_RECORD: state_json(sriov=SECTION), SRIOV_CONF: on_node(SRIOV_CONF, CONF)}
    plan = plan_node(vfs_in_a_running_vm(fake_node), inputs(), seen)
    assert plan["sriov"]["apply"] == [dict(SECTION[0], vfs=0, vf_driver="none", settings=[])]
    assert named(plan, VF1, "4242"), plan["errors"]


def test_dropping_a_pf_destroys_the_vf_that_carries_the_management_path(fake_node):
    """VF 0 carries the management bridge vmbr0 (default route); the admin removes its PF from passthrough_sriov and
    the next run sets the PF to 0 VFs: the node drops off the network mid-run (lockout), no refusal."""
    def bridge_on_vf0(profile):
        profile["interfaces"][0]["lowers"] = ["enp4s0f0v0"]  # vmbr0, the management bridge (default route)
        next(d for d in profile["devices"] if d["address"] == VF0)["netdevs"][0]["state"] = "up"
    found = facts(fake_node, mutate=bridge_on_vf0)
    assert device(found, VF0)["netdevs"][0]["management"]
    seen = {STATE_RECORD: state_json(sriov=SECTION), SRIOV_CONF: on_node(SRIOV_CONF, CONF)}
    plan = plan_node(found, inputs(), seen)
    assert plan["sriov"]["apply"][0]["vfs"] == 0
    assert named(plan, VF0), plan["errors"]


def test_holds_a_vf_carrying_the_management_path_is_refused_for_passthrough(fake_node):
    """Holds: a VF whose interface carries the default route is refused in passthrough_devices (lockout guard)."""
    found = facts(fake_node)
    device(found, VF0)["netdevs"][0].update(management=True, management_reasons=["default route (ipv4)"])
    plan = plan_node(found, inputs(devices=[{"address": VF0}]))
    assert named(plan, VF0, "management path")


def test_holds_vfs_zero_under_a_running_vm_is_refused(fake_node):
    """Holds: `vfs: 0` in the inventory (rather than dropping the entry) while VM 101 runs on VF 1 is refused."""
    plan = plan_node(vfs_in_a_running_vm(fake_node), inputs(sriov=[{"address": PF, "vfs": 0}]))
    assert named(plan, VF1, "4242")


def test_a_state_json_truncated_to_zero_bytes_is_taken_for_no_record(fake_node):
    """state.json emptied to 0 bytes (a stray `>` redirect, a restore tool): the engine reads 'no record' and goes on -
    SR-IOV rewrites it as if nothing had been done before - while the same file holding only a newline is
    refused. The lost record is what rollback needs."""
    seen = {STATE_RECORD: on_node(STATE_RECORD, "")}
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]), seen)
    assert [e for e in plan["errors"] if STATE_RECORD in e], plan["errors"]


def test_a_vf_the_facts_do_not_describe_is_destroyed_by_a_count_change_without_a_guard(fake_node):
    """The PF lists VF 0000:04:02.1 (virtfn1) but pci_facts has no entry for it (its sysfs directory could not be
    read): the count-change guard looks only at described VFs, finds nothing in use and lets the change through -
    what it cannot see should be a refusal."""
    found = vfs_in_a_running_vm(fake_node)
    found["vfio_pci_devices"] = [d for d in found["vfio_pci_devices"] if d["address"] != VF1]
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 4, "vf_driver": "vfio-pci"}]))
    assert device(found, PF)["sriov"]["vfs"] == [VF0, VF1]
    assert named(plan, VF1), plan["errors"]


# --- HOLDS -------------------------------------------------------------------------------------------
def test_holds_sriov_totalvfs_zero_is_a_refusal_not_a_crash(fake_node):
    """Holds: a PF whose firmware disabled SR-IOV (sriov_totalvfs 0) is refused, naming the value."""
    found = facts(fake_node)
    device(found, PF)["sriov"].update(total_vfs=0, num_vfs=0, vfs=[])
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2}]))
    assert plan["errors"] == ["passthrough_sriov[0].vfs: 2 is more than the 0 VFs 0000:04:00.0 supports "
                              "(sriov_totalvfs)"]


def test_holds_a_pf_named_by_mac_in_passthrough_and_by_interface_in_sriov_is_refused(fake_node):
    """Holds: the same PF named by MAC in passthrough_devices and by interface in passthrough_sriov is refused."""
    plan = plan_node(facts(fake_node), inputs(devices=[{"mac": "3c:fd:fe:00:04:00"}],
                                              sriov=[{"interface": "enp4s0f0np0", "vfs": 2}]))
    assert named(plan, PF, "SR-IOV physical function"), plan["errors"]


def test_holds_vfs_selected_by_id_and_given_to_the_host_driver_are_refused_for_each_vf(fake_node):
    """Holds: VFs selected for vfio-pci by vendor:device while SR-IOV gives the PF's VFs to iavf: refused per VF."""
    plan = plan_node(facts(fake_node), inputs(devices=[{"id": "8086:154c"}],
                                              sriov=[{"mac": "3c:fd:fe:00:04:00", "vfs": 2, "vf_driver": "host"}]))
    assert len(named(plan, "bind it differently")) == 2


def test_holds_one_pf_named_twice_in_sriov_by_interface_and_by_mac_is_refused(fake_node):
    """Holds: one PF listed twice (by interface, then by MAC) with different counts is refused, not applied twice."""
    plan = plan_node(facts(fake_node), inputs(sriov=[{"interface": "enp4s0f0np0", "vfs": 2},
                                                     {"mac": "3C:FD:FE:00:04:00", "vfs": 4}]))
    assert plan["errors"] and [pf["address"] for pf in plan["sriov"]["apply"]] == [PF]
    # (refused, though the message speaks of a MAC already given, not of the PF named twice - see the report)


def test_holds_a_vf_named_as_a_pf_by_its_mac_is_refused(fake_node):
    """Holds: an entry that names a VF (by its MAC) as the PF is refused - no VFs of the wrong port."""
    plan = plan_node(facts(fake_node), inputs(sriov=[{"mac": "3e:00:00:04:02:01", "vfs": 2}]))
    assert plan["errors"] == ["passthrough_sriov[0]: 0000:04:02.1 is itself a virtual function of 0000:04:00.0"]


def test_holds_a_replaced_card_in_the_recorded_slot_is_not_touched(fake_node):
    """Holds: the recorded X710 was swapped for another card: its slot is not set to 0 VFs, only a warning."""
    seen = {STATE_RECORD: state_json(sriov=[dict(SECTION[0], id="15b3:1017")])}
    plan = plan_node(facts(fake_node), inputs(state="absent"), seen)
    assert plan["errors"] == [] and plan["sriov"]["apply"] == []
    assert any("another card is in that slot" in w for w in plan["warnings"])


def test_holds_a_crlf_sriov_conf_still_names_its_pf(fake_node):
    """Holds: sriov.conf saved with CRLF by an editor still names its PF, so the VFs are released on rollback."""
    seen = {SRIOV_CONF: on_node(SRIOV_CONF, CONF.replace("\n", "\r\n"))}
    plan = plan_node(facts(fake_node), inputs(state="absent"), seen)
    assert [pf["address"] for pf in plan["sriov"]["apply"]] == [PF]


def test_holds_a_count_change_under_a_running_vm_is_refused(fake_node):
    """Holds: changing 2 VFs to 4 while VM 101 runs on VF 1 is refused, naming the VM."""
    wanted = inputs(sriov=[{"address": PF, "vfs": 4, "vf_driver": "vfio-pci"}])
    plan = plan_node(vfs_in_a_running_vm(fake_node), wanted)
    assert named(plan, VF1, "4242")


def test_holds_check_mode_does_not_claim_to_enable_a_unit_it_has_not_written(fake_node):
    """Holds: check mode reports the files and the record it would write for a first SR-IOV run."""
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]))
    change = changes(plan, {}, ["x\n"] * len([f for f in plan["files"] if f["template"]]), check_mode=True)
    assert STATE_RECORD in change["write"] and SRIOV_CONF in change["write"]


def test_holds_an_unreadable_proc_refuses_a_planned_count_change(fake_node):
    """Holds (for a planned count change): /proc unreadable, VFs on vfio-pci - a count change is refused."""
    found = vfs_in_a_running_vm(fake_node)
    found["vfio_host"].update(vfio_users=None, vfio_users_error="/proc cannot be read")
    plan = plan_node(copy.deepcopy(found), inputs(sriov=[{"address": PF, "vfs": 3, "vf_driver": "vfio-pci"}]))
    assert named(plan, "cannot be known")


# --- fixed in the change that brought these tests (the reviewer's tests of these asserted the old plan) ----------
def test_fixed_vfs_are_not_planned_on_a_pf_that_is_on_vfio_pci(fake_node):
    """A PF passed through whole (by hand) to a running VM: VFs planned on it would fail or reset the guest's NIC
    at every boot - refused, naming the PF."""
    found = facts(fake_node)
    pf = device(found, PF)
    pf.update(driver="vfio-pci", netdevs=[])
    pf["sriov"].update(num_vfs=0, vfs=[])
    found["vfio_pci_devices"] = [d for d in found["vfio_pci_devices"] if d["address"] not in (VF0, VF1)]
    found["vfio_host"]["vfio_users"] = {"20": [VM]}
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_macs": "keep"}]))
    assert plan["sriov"]["apply"] == []
    assert [e for e in plan["errors"] if PF in e and "is on vfio-pci" in e], plan["errors"]


def test_fixed_an_unreadable_sriov_numvfs_is_a_refusal_not_zero(fake_node):
    """sriov_numvfs could not be read while two VFs exist and a VM runs on one: an unknown count is not 0 - the
    change is refused instead of destroying VFs nobody checked."""
    found = vfs_in_a_running_vm(fake_node)
    device(found, PF)["sriov"]["num_vfs"] = None
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 4, "vf_driver": "vfio-pci"}]))
    assert plan["sriov"]["apply"] == []
    assert [e for e in plan["errors"] if "the VF count of %s cannot be read" % PF in e], plan["errors"]
