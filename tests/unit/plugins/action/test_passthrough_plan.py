"""The passthrough role's planning step (plugins/action/passthrough_plan.py, _changes.step): the plan, the role's
own templates rendered through the template lookup, the comparison, the outcome, whether the node needs any task
after the step (a converged node does not), and the report the administrator reads."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import step
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node, watched_paths

REPO = Path(__file__).resolve().parents[4]
ROLE = REPO / "roles" / "passthrough"
COLLECTIONS = REPO.parents[2] if REPO.parent.name == "vfio" else REPO / ".ansible" / "collections"
CARD = {"interface": "enp2s0"}  # the guide's spare igc card


def facts(fake_node, profile="guide-intel"):
    node = fake_node(profile)
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def inputs(**given) -> dict:
    return dict({"state": "present", "devices": [CARD], "bind_now": False, "reboot": "never", "sriov": []}, **given)


def absent() -> dict:
    return {path: {"path": path, "exists": False} for path in watched_paths()["paths"]}


def run_action(args: dict, check_mode: bool = False, node: dict | None = None, task_vars: dict | None = None) -> dict:
    """The action's result, from a process of its own (action_runner.py says why); `node` is what pci_facts
    answers on the node when the step discovers (the result then says which modules it ran: runner_calls)."""
    given = {"args": args, "check_mode": check_mode, "role": str(ROLE), "collections": str(COLLECTIONS),
             "task_vars": task_vars or {}}
    if node is not None:
        given["node"] = node
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("action_runner.py"))], check=True,
                          capture_output=True, text=True, timeout=120, input=json.dumps(given))
    return json.loads(done.stdout)


def discovered(fake_node, files: dict | None = None, profile="guide-intel") -> dict:
    """pci_facts' answer on a fake node, made by discovery's own code: its facts, warnings and the files."""
    node = fake_node(profile)
    found = gather(run=node.run, which=node.which, **node.roots)
    return {"changed": False, "ansible_facts": found["ansible_facts"], "warnings": found["warnings"] + ["a warning"],
            "files": absent() if files is None else files, "check_mode": False}


def converge(result: dict) -> dict:
    """The node's files after a run that wrote what `result` says: each file as rendered, the initramfs
    modules block, the directories; the pending mark cleared."""
    seen = absent()
    block = result["plan"]["block"]
    written = [item for item in result["changes"]["files"] if item["path"] != result["plan"]["pending_path"]]
    lines = [block["marker"].replace("{mark}", "BEGIN"), *block["lines"], block["marker"].replace("{mark}", "END")]
    written.append({"path": block["path"], "mode": "0644", "content": "\n".join(lines) + "\n"})
    for item in written:
        content = item["content"]
        seen[item["path"]] = {"path": item["path"], "exists": True, "type": "file", "mode": item["mode"], "uid": 0,
                              "gid": 0, "content": content, "checksum": hashlib.sha1(content.encode()).hexdigest()}
    for path in result["changes"]["dirs"]:
        seen[path] = {"path": path, "exists": True, "type": "directory", "mode": "0755", "uid": 0, "gid": 0}
    return seen


def test_a_fresh_node_is_planned_rendered_and_compared_in_one_step(fake_node):
    result = run_action({"facts": facts(fake_node), "inputs": inputs(), "files": absent()})
    assert not result.get("failed") and result["changed"] is False
    assert result["plan"]["errors"] == [] and [d["address"] for d in result["plan"]["devices"]] == ["0000:02:00.0"]
    written = {f["path"]: f["content"] for f in result["changes"]["files"]}
    # The role's own templates, rendered with the plan: the ID binding and the ansible_managed header.
    assert "options vfio-pci ids=8086:15f3" in written["/etc/modprobe.d/vfio-proxmox.conf"]
    assert written["/etc/modprobe.d/vfio-proxmox.conf"].startswith("#")
    assert result["changes"]["any"] and result["act"]
    assert result["outcome"]["reboot_required"] and not result["outcome"]["reboot_now"]


def test_a_converged_node_needs_no_task_after_the_step_and_still_hears_about_its_reboot(fake_node):
    node = facts(fake_node)
    first = run_action({"facts": node, "inputs": inputs(), "files": absent()})
    again = run_action({"facts": node, "inputs": inputs(), "files": converge(first)})
    assert again["changes"]["any"] is False, again["changes"]
    assert again["act"] is False
    # Nothing binds live, so the reboot notes are final and come with the plan's reasons.
    assert again["report"][-1].startswith("Reboot required (kernel command line: iommu=pt")
    assert again["report"][-1].endswith("set passthrough_reboot=if_needed, or reboot and run vfio.proxmox.verify.")
    assert set(again["plan"]["reasons"]) <= set(again["report"]) and again["quiet"] is False


def test_the_verify_and_plan_entry_points_leave_the_reboot_notes_out(fake_node):
    result = run_action({"facts": facts(fake_node), "inputs": inputs(), "files": absent(), "notes": False})
    assert not any(line.startswith("Reboot required") for line in result["report"])


def test_a_converged_node_that_reboots_when_needed_acts_and_check_mode_says_so(fake_node):
    node = facts(fake_node)
    first = run_action({"facts": node, "inputs": inputs(reboot="if_needed"), "files": absent()})
    real = run_action({"facts": node, "inputs": inputs(reboot="if_needed"), "files": converge(first)})
    assert real["changes"]["any"] is False and real["outcome"]["reboot_now"] and real["act"]
    assert not any("Reboot required" in line or "Check mode" in line for line in real["report"])
    check = run_action({"facts": node, "inputs": inputs(reboot="if_needed"), "files": converge(first)}, True)
    assert [line for line in check["report"] if line.startswith("Check mode: the real run would reboot")]


def test_a_refused_plan_is_not_compared_and_does_not_act(fake_node):
    result = run_action({"facts": facts(fake_node), "inputs": inputs(devices=[{"interface": "nosuch0"}]),
                         "files": absent()})
    assert not result.get("failed"), "the role refuses with the errors, after exporting the plan"
    assert result["plan"]["errors"] and result["act"] is False and result["changes"]["any"] is False
    assert result["report"] == [] and result["quiet"] is True


def test_unknown_arguments_are_refused():
    assert "nosuch" in run_action({"facts": {}, "inputs": {}, "nosuch": 1})["exception"]


def test_a_live_bind_defers_the_reboot_notes_until_the_devices_moved(fake_node):
    node = facts(fake_node)
    plan = plan_node(node, inputs(bind_now=True), absent())
    assert plan["bind_live"], "guide-intel's IOMMU is active and its card is on igc"
    result = step(plan, node, absent(), ["x\n"] * len([f for f in plan["files"] if f["template"]]))
    assert result["act"] and not any(line.startswith("Reboot required") for line in result["report"])


def test_a_converged_node_whose_verification_fails_acts_so_verify_fails_it(fake_node):
    node = facts(fake_node)
    first = run_action({"facts": node, "inputs": inputs(), "files": absent()})
    plan = dict(first["plan"], reboot_for_cmdline=False, bind_drivers={"0000:02:00.0": "vfio-pci"})
    texts = [f["content"] for f in first["changes"]["files"] if f["path"] != plan["pending_path"]]
    broken = dict(node, vfio_host=dict(node["vfio_host"], iommu_active=False))
    assert step(plan, broken, converge(first), texts)["act"] is True
    healthy = dict(node, vfio_pci_devices=[dict(d, driver="vfio-pci") if d["address"] == "0000:02:00.0" else d
                                           for d in node["vfio_pci_devices"]],
                   vfio_host=dict(node["vfio_host"], cmdline=node["vfio_host"]["cmdline"] + ["iommu=pt"]))
    assert step(plan, healthy, converge(first), texts)["act"] is False


def test_without_facts_the_step_discovers_the_node_with_every_path_the_plan_needs(fake_node):
    node = discovered(fake_node)
    result = run_action({"inputs": inputs(), "sysfs_root": "/fake/sys", "procfs_root": "/fake/proc"}, node=node)
    watch = watched_paths()
    assert result["runner_calls"] == [{"module": "vfio.proxmox.pci_facts", "args": {
        "sysfs_root": "/fake/sys", "procfs_root": "/fake/proc", "files": watch["paths"], "read_files": watch["read"]}}]
    # The facts are set on the host as pci_facts sets them, and its warnings are shown with the step.
    assert result["ansible_facts"] == node["ansible_facts"]
    assert result["warnings"] == node["warnings"] and "a warning" in result["warnings"]
    assert [d["address"] for d in result["plan"]["devices"]] == ["0000:02:00.0"]
    assert result["act"] and result["changes"]["any"] and result["check_mode"] is False


def test_a_discovered_converged_node_needs_no_task_after_the_step(fake_node):
    first = run_action({"inputs": inputs()}, node=discovered(fake_node))
    again = run_action({"inputs": inputs()}, node=discovered(fake_node, converge(first)))
    assert again["runner_calls"][0]["args"]["sysfs_root"] == "/sys", "the node's own /sys by default"
    assert again["runner_calls"][0]["args"]["procfs_root"] == "/proc"
    assert again["changes"]["any"] is False and again["act"] is False


def test_a_discovery_that_fails_fails_the_step_with_its_message_and_plans_nothing(fake_node):
    failed = {"failed": True, "msg": "pci_facts: /etc/vfio-proxmox/state.json is not readable"}
    result = run_action({"inputs": inputs()}, node=failed)
    assert result["failed"] is True and result["msg"] == failed["msg"]
    assert "plan" not in result and "act" not in result and "ansible_facts" not in result


def test_given_facts_are_planned_without_going_to_the_node(fake_node):
    result = run_action({"facts": facts(fake_node), "inputs": inputs(), "files": absent()})
    assert result["runner_calls"] == [] and "ansible_facts" not in result
    assert [d["address"] for d in result["plan"]["devices"]] == ["0000:02:00.0"]


def test_given_facts_with_a_root_to_discover_from_is_refused(fake_node):
    result = run_action({"facts": facts(fake_node), "inputs": inputs(), "sysfs_root": "/fake/sys"})
    assert "mutually exclusive" in result["exception"] and "sysfs_root" in result["exception"]


def role_variables(**given) -> dict:
    return {"passthrough_" + name: value for name, value in inputs(
        bind_method="auto", iommu_pt=True, extra_cmdline=[], blacklist_drivers=[], boot_loader="auto", adopt=False,
        **given).items()}


def test_without_inputs_the_step_reads_the_roles_variables(fake_node):
    given = role_variables(devices=[{"address": "0000:02:00.0"}])
    result = run_action({"facts": facts(fake_node), "files": absent()}, task_vars=given)
    assert [d["address"] for d in result["plan"]["devices"]] == ["0000:02:00.0"]
    assert "iommu=pt" in result["plan"]["cmdline_tokens"]
    without_pt = run_action({"facts": facts(fake_node), "files": absent()},
                            task_vars=dict(given, passthrough_iommu_pt=False))
    assert "iommu=pt" not in without_pt["plan"]["cmdline_tokens"]
    # A variable that is a template (as an inventory may write it) is planned with its value.
    templated = dict(given, passthrough_devices="{{ my_cards }}", my_cards=[{"interface": "enp2s0"}])
    from_template = run_action({"facts": facts(fake_node), "files": absent()}, task_vars=templated)
    assert [d["address"] for d in from_template["plan"]["devices"]] == ["0000:02:00.0"], from_template
    # A variable missing (the step used outside the role) is named, not planned as empty.
    missing = dict(given)
    del missing["passthrough_sriov"]
    refused = run_action({"facts": facts(fake_node), "files": absent()}, task_vars=missing)
    assert "passthrough_sriov not defined" in refused["exception"], refused
