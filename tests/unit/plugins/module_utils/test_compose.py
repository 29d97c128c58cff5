"""The composed plan (plan/_compose.py): passthrough and SR-IOV planned together, conflicts refused before
any write, SR-IOV's owned files and unit moved through the role's one chain."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jinja2
import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import STATE_RECORD
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import (
    SRIOV_CONF,
    SRIOV_SCRIPT,
    SRIOV_UNIT,
    SRIOV_WANTS,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import conflicts, plan_node, watched_paths

TEMPLATES = Path(__file__).resolve().parents[4] / "roles" / "passthrough" / "templates"
PF = "0000:04:00.0"


def facts(fake_node, profile="sriov-x710", mutate=None):
    node = fake_node(profile, mutate=mutate)
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def inputs(**given) -> dict:
    return dict({"state": "present", "devices": [], "sriov": []}, **given)


def render(plan: dict) -> list[str]:
    texts = []
    for row in plan["files"]:
        if row["template"] == "state.json.j2":
            texts.append(json.dumps(dict({"_comment": "Ansible managed - vfio.proxmox: record"},
                                         **plan["state_record"]), indent=2))
        elif row["template"] and not row["template"].startswith(("sriov", "vfio-proxmox-sriov")):
            texts.append("rendered %s\n" % row["path"])  # passthrough's: only count and order matter here
        elif row["template"]:
            template = jinja2.Template((TEMPLATES / row["template"]).read_text(), keep_trailing_newline=True,
                                       trim_blocks=True)
            texts.append(template.render(ansible_managed="Ansible managed", passthrough_plan=plan))
    return texts


def on_node(path: str, content: str, mode: str) -> dict:
    return {"exists": True, "type": "file", "mode": mode, "uid": 0, "gid": 0, "content": content,
            "checksum": hashlib.sha1(content.encode()).hexdigest()}


def test_a_pf_selected_for_passthrough_by_interface_is_refused_for_sriov(fake_node):
    # The shipped playbook passed an empty list here (issue 19): the selectors resolve in the one plan now.
    plan = plan_node(facts(fake_node, "dual-port-igb"), inputs(devices=[{"interface": "enp1s0f1"}],
                                                               sriov=[{"address": "0000:01:00.1", "vfs": 2}]))
    assert plan["errors"] == ["passthrough_sriov[0]: 0000:01:00.1 is also in passthrough_devices - a physical "
                              "function with VFs stays on the host; pass its VFs instead"]
    # A PF that has VFs already is refused by passthrough's own selection.
    plan = plan_node(facts(fake_node), inputs(devices=[{"interface": "enp4s0f0np0"}],
                                              sriov=[{"address": PF, "vfs": 2}]))
    assert plan["errors"] == ["passthrough_devices[0] selects 0000:04:00.0, an SR-IOV physical function with 2 VFs "
                              "enabled: pass the VFs instead"]


def test_a_vf_passed_through_that_a_count_change_destroys_is_refused(fake_node):
    plan = plan_node(facts(fake_node), inputs(devices=[{"address": "0000:04:02.1"}],
                                              sriov=[{"interface": "enp4s0f0np0", "vfs": 4}]))
    assert plan["errors"] == [
        "passthrough_devices[0] selects 0000:04:02.1, a VF of 0000:04:00.0, and passthrough_sriov[0] changes that "
        "PF's VF count from 2 to 4 - which destroys the VF: pass it through once its PF's count is settled"]


def test_a_vf_passed_through_whose_pf_is_dropped_from_sriov_is_refused(fake_node):
    seen = {SRIOV_CONF: on_node(SRIOV_CONF, "# vfio.proxmox:\npf 0000:04:00.0 8086:1572 2 vfio-pci\n", "0644")}
    plan = plan_node(facts(fake_node), inputs(devices=[{"address": "0000:04:02.1"}]), seen)
    assert plan["errors"] == [
        "passthrough_devices[0] selects 0000:04:02.1, a VF of 0000:04:00.0, and the SR-IOV boot configuration "
        "changes that PF's VF count from 2 to 0 - which destroys the VF: pass it through once its PF's count is "
        "settled"]


def test_a_vf_two_features_bind_differently_is_refused_and_the_same_binding_is_not(fake_node):
    plan = plan_node(facts(fake_node), inputs(devices=[{"address": "0000:04:02.1"}],
                                              sriov=[{"address": PF, "vfs": 2, "vf_driver": "host"}]))
    assert ("passthrough_devices[0] selects 0000:04:02.1, a VF of 0000:04:00.0, for vfio-pci, and passthrough_sriov[0] "
            "gives that PF's VFs to the host's VF driver (vf_driver: host) - the two bind it differently: set "
            "vf_driver to none or vfio-pci") in plan["errors"]
    plan = plan_node(facts(fake_node), inputs(devices=[{"address": "0000:04:02.1"}],
                                              sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]))
    assert plan["errors"] == []


def test_a_path_two_features_claim_is_refused():
    plan = {"files": [{"path": SRIOV_CONF}], "devices": []}
    assert conflicts(plan, {"files": [{"path": SRIOV_CONF}], "apply": [], "pfs": []}, {}) == [
        "/etc/vfio-proxmox/sriov.conf is claimed by both passthrough and SR-IOV - one owner per file"]


def test_sriov_alone_writes_its_files_enables_its_unit_and_then_converges(fake_node):
    found = facts(fake_node)
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]))
    assert plan["errors"] == [] and plan["act"] is True and plan["verify"] is False
    assert [(f["path"], f["template"]) for f in plan["files"]] == [
        (SRIOV_CONF, "sriov.conf.j2"), (SRIOV_SCRIPT, "vfio-proxmox-sriov.sh.j2"),
        (SRIOV_UNIT, "vfio-proxmox-sriov.service.j2"), (STATE_RECORD, "state.json.j2")]
    assert plan["state_record"] == {"sriov": [{"address": PF, "id": "8086:1572", "vfs": 2, "vf_driver": "vfio-pci"}]}
    assert plan["sriov"]["live"] and plan["sriov"]["unit"]["enable"] and not plan["sriov"]["unit"]["disable"]
    texts = render(plan)
    change = changes(plan, {}, texts)
    assert change["write"] == [SRIOV_CONF, SRIOV_SCRIPT, SRIOV_UNIT, STATE_RECORD]
    assert change["units"] == {"disable": [], "enable": ["vfio-proxmox-sriov.service"], "reload": True}
    assert change["rebuild"] == [] and change["block"] is False and change["cmdline"] is False
    assert "/etc/vfio-proxmox" not in change["finish"]["remove_empty_dirs"]
    # The node as that run left it: nothing differs, nothing to do but sriov_vfs' own comparison.
    seen = {row["path"]: on_node(row["path"], text, row["mode"]) for row, text in zip(plan["files"], texts)}
    seen.update({SRIOV_WANTS: {"exists": True, "type": "link"}, "/etc/vfio-proxmox": {"exists": True,
                                                                                      "type": "directory"},
                 "/usr/local/sbin": {"exists": True, "type": "directory"},
                 "/etc/systemd/system": {"exists": True, "type": "directory"}})
    again = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]), seen)
    assert changes(again, seen, render(again))["any"] is False


def test_absent_removes_the_vfs_the_files_and_disables_the_unit_first(fake_node):
    conf = "# vfio.proxmox:\npf 0000:04:00.0 8086:1572 2 vfio-pci\n"
    # The role's script and unit carry its mark (vfio.proxmox:): a file without it is someone else's.
    seen = {SRIOV_CONF: on_node(SRIOV_CONF, conf, "0644"),
            SRIOV_SCRIPT: on_node(SRIOV_SCRIPT, "# vfio.proxmox: boot script\n", "0755"),
            SRIOV_UNIT: on_node(SRIOV_UNIT, "# vfio.proxmox: unit\n", "0644"),
            SRIOV_WANTS: {"exists": True, "type": "link"},
            "/etc/vfio-proxmox": {"exists": True, "type": "directory"}}
    plan = plan_node(facts(fake_node), inputs(state="absent", sriov=[{"address": PF, "vfs": 2}]), seen)
    assert plan["errors"] == []
    assert plan["sriov"]["apply"] == [{"address": PF, "id": "8086:1572", "vfs": 0, "vf_driver": "none",
                                       "settings": []}]
    change = changes(plan, seen, render(plan))
    assert set(change["remove"]) >= {SRIOV_SCRIPT, SRIOV_UNIT}
    # The record of what to release goes once the VFs are removed (act.yml, after bind.yml).
    assert SRIOV_CONF in change["after_release"]["remove"] and SRIOV_CONF not in change["remove"]
    assert change["units"] == {"disable": ["vfio-proxmox-sriov.service"], "enable": [], "reload": True}
    assert "/etc/vfio-proxmox" in change["after_release"]["remove_empty_dirs"]


@pytest.mark.parametrize("state", ["present", "absent"])
def test_passthrough_alone_is_planned_as_before(fake_node, state):
    found = facts(fake_node, "guide-intel")
    given = {"state": state, "devices": [{"interface": "enp2s0"}] if state == "present" else []}
    composed = plan_node(found, dict(given, sriov=[]))
    alone = make_plan(found, given)
    assert {k: v for k, v in composed.items() if k not in ("sriov", "verify")} == alone
    assert composed["verify"] is (state == "present")
    assert changes(composed, {}, render(composed))["units"] == {"disable": [], "enable": [], "reload": False}


def test_the_watch_list_covers_both_features():
    watched = watched_paths()
    assert {SRIOV_CONF, SRIOV_SCRIPT, SRIOV_UNIT, SRIOV_WANTS} <= set(watched["paths"])
    assert SRIOV_CONF in watched["read"] and "/etc/vfio-proxmox/state.json" in watched["read"]


def test_check_mode_asks_systemd_only_about_a_unit_whose_file_is_on_the_node(fake_node):
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]))
    assert changes(plan, {}, render(plan), check_mode=True)["units"]["enable"] == []
    seen = {SRIOV_UNIT: on_node(SRIOV_UNIT, "# vfio.proxmox: an older unit\n", "0644")}
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]), seen)
    assert changes(plan, seen, render(plan), check_mode=True)["units"]["enable"] == ["vfio-proxmox-sriov.service"]


def test_a_unit_link_left_without_its_unit_file_is_removed_not_disabled(fake_node):
    seen = {SRIOV_WANTS: {"exists": True, "type": "link"}}
    plan = plan_node(facts(fake_node), inputs(state="absent"), seen)
    change = changes(plan, seen, render(plan))
    assert SRIOV_WANTS in change["remove"] and change["units"]["disable"] == []


def state_json(**record) -> dict:
    return on_node(STATE_RECORD, json.dumps(dict({"_comment": "Ansible managed - vfio.proxmox: record"}, **record)),
                   "0644")


SECTION = [{"address": PF, "id": "8086:1572", "vfs": 2, "vf_driver": "none"}]


def test_the_record_keeps_passthroughs_part_when_only_sriov_acts(fake_node):
    earlier = {"selectors": {}, "targets": [{"address": "0000:00:1f.6", "id": "8086:1a1c"}], "created_dirs": [],
               "backups": {}}
    seen = {STATE_RECORD: state_json(**earlier)}
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]), seen)
    assert plan["state_record"] == dict(earlier, sriov=SECTION)


def test_passthrough_acting_writes_both_sections(fake_node):
    plan = plan_node(facts(fake_node), inputs(devices=[{"address": "0000:04:02.0"}],
                                              sriov=[{"address": PF, "vfs": 2}]))
    assert plan["errors"] == [] and plan["state_record"]["sriov"] == SECTION
    assert plan["state_record"]["targets"] == [{"address": "0000:04:02.0", "id": "8086:154c"}]
    assert [f["path"] for f in plan["files"]].count(STATE_RECORD) == 1


def test_sriov_dropped_takes_its_section_out_and_a_record_of_sriov_alone_goes(fake_node):
    seen = {STATE_RECORD: state_json(sriov=SECTION)}
    plan = plan_node(facts(fake_node), inputs(), seen)
    assert plan["sriov"]["apply"] == [dict(SECTION[0], vfs=0, settings=[])]
    assert changes(plan, seen, render(plan))["remove"] == [STATE_RECORD]
    earlier = {"selectors": {}, "targets": [{"address": "0000:00:1f.6", "id": "8086:1a1c"}]}
    seen = {STATE_RECORD: state_json(sriov=SECTION, **earlier)}
    plan = plan_node(facts(fake_node), inputs(), seen)
    assert plan["state_record"] == earlier


def test_the_record_alone_is_enough_to_release_the_vfs_when_sriov_conf_is_lost(fake_node):
    seen = {STATE_RECORD: state_json(sriov=SECTION)}
    plan = plan_node(facts(fake_node), inputs(state="absent"), seen)
    assert plan["sriov"]["apply"] == [dict(SECTION[0], vfs=0, settings=[])]
    assert STATE_RECORD in changes(plan, seen, render(plan))["after_release"]["remove"]


def test_an_unreadable_record_is_refused_before_sriov_rewrites_it(fake_node):
    seen = {STATE_RECORD: on_node(STATE_RECORD, "{not json", "0644")}
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]), seen)
    assert len(plan["errors"]) == 1
    assert plan["errors"][0].startswith("/etc/vfio-proxmox/state.json is not valid JSON (")
    assert plan["errors"][0].endswith(" - SR-IOV cannot tell which PFs it gave VFs; move it away or fix it")
