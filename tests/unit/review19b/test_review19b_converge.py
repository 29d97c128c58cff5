"""Review 19b (adversarial): a second run after the first must change nothing - simulated by applying the first
plan's files to the seen files and the expected driver moves to the facts. The two test_holds_* passed (the code
held); the interrupted-rollback test failed before the records were kept until the release."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from tests.unit.review19.review19_helpers import facts, inputs
from tests.unit.review19b.review19b_helpers import apply

PF = "0000:04:00.0"
VF0, VF1 = "0000:04:02.0", "0000:04:02.1"


def vfs_on_vfio(profile):
    for device in profile["devices"]:
        if device.get("physfn") == PF:
            device.update(driver="vfio-pci", netdevs=[])


def test_holds_passthrough_of_a_vf_with_its_pf_in_sriov_converges(fake_node):
    """Production: every scheduled run of the playbook should be a no-op on a converged node (no rewrite, no
    initramfs rebuild, no live rebinding). A second plan after the first was applied must write nothing."""
    wanted = inputs(devices=[{"address": VF1}], sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    first = plan_node(facts(fake_node), wanted)
    assert first["errors"] == []
    seen, change = apply(first, {})
    assert change["write"]
    second = plan_node(facts(fake_node, mutate=vfs_on_vfio), wanted, seen)
    assert second["errors"] == []
    again = apply(second, seen)[1]
    assert (again["write"], again["remove"], again["block"], again["rebuild"], second["bind_live"]) == (
        [], [], False, [], False)


def test_holds_rollback_of_vf_passthrough_and_sriov_converges(fake_node):
    """After passthrough_state: absent removed everything, a second rollback run must find nothing left to do -
    a rollback that keeps acting (or keeps failing) never converges."""
    wanted = inputs(devices=[{"address": VF1}], sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    seen = apply(plan_node(facts(fake_node), wanted), {})[0]
    removal = plan_node(facts(fake_node, mutate=vfs_on_vfio), inputs(state="absent"), seen)
    assert removal["errors"] == [], removal["errors"]
    seen, change = apply(removal, seen)
    assert change["remove"] and change["after_release"]["remove"]

    def gone(profile):
        next(d for d in profile["devices"] if d["address"] == PF)["sriov"] = {"total": 32, "num": 0}
        profile["devices"] = [d for d in profile["devices"] if d.get("physfn") != PF]
    again = plan_node(facts(fake_node, mutate=gone), inputs(state="absent"), seen)
    assert again["errors"] == []
    change = apply(again, seen)[1]
    left = {k: v for k, v in change.items() if v}
    assert (change["write"], change["remove"], change["any"], again["sriov"]["live"]) == ([], [], False, False), left


def test_a_rollback_interrupted_after_its_file_step_still_knows_what_to_release(fake_node):
    """passthrough_state: absent runs owned_files (state.json, sriov.conf and the unit go) before bind.yml
    (sriov_vfs removes the VFs, vfio_bind releases the devices). A run killed in between - SSH drop, Ctrl-C,
    a node that hangs on unbind - leaves the VFs on vfio-pci with every record of them gone: the next rollback
    sees nothing to release or remove and reports the node clean while the VFs and their vfio-pci bindings stay
    until someone reboots. The rebuilds survive such a stop (the pending mark); the live releases do not."""
    wanted = inputs(devices=[{"address": VF1}], sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    seen = apply(plan_node(facts(fake_node), wanted), {})[0]
    converged = facts(fake_node, mutate=vfs_on_vfio)
    removal = plan_node(converged, inputs(state="absent"), seen)
    assert removal["errors"] == [] and removal["sriov"]["apply"] and removal["bind_targets"]
    seen = apply(removal, seen, released=False)[0]  # the file step ran; the run stops before bind.yml
    again = plan_node(converged, inputs(state="absent"), seen)
    assert again["errors"] == []
    assert again["sriov"]["apply"] == removal["sriov"]["apply"], again["sriov"]["apply"]
    assert again["bind_targets"] == removal["bind_targets"], again["bind_targets"]
