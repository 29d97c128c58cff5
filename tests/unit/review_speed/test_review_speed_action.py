"""Review of the change "discovery and the plan are one step": the action plugin through the existing runner
(tests/unit/plugins/action/action_runner.py, a stand-in node) and its documentation. Each test FAILS on the change."""

from __future__ import annotations

from pathlib import Path

from tests.unit.plugins.action.test_passthrough_plan import discovered, inputs, run_action

REPO = Path(__file__).resolve().parents[3]


def test_discovery_roots_are_expanded_on_the_node_not_on_the_controller(fake_node, monkeypatch):
    """discover.yml handed passthrough_sysfs_root to pci_facts, whose `type: path` expands ~ and $VARS on the node
    (the remote user's home). The action's own ARGUMENT_SPEC declares sysfs_root/procfs_root `type: path`
    (plugins/action/passthrough_plan.py: ARGUMENT_SPEC), so validate_argument_spec expands them on the
    controller, with the controller's HOME and environment, before they reach the node."""
    monkeypatch.setenv("HOME", "/home/controller-user")
    result = run_action({"inputs": inputs(), "sysfs_root": "~/sim/sys", "procfs_root": "~/sim/proc"},
                        node=discovered(fake_node))
    args = result["runner_calls"][0]["args"]
    assert (args["sysfs_root"], args["procfs_root"]) == ("~/sim/sys", "~/sim/proc"), args


def test_the_steps_documentation_no_longer_says_it_runs_on_the_controller_only():
    """plugins/modules/passthrough_plan.py line 4 and DEVELOPMENT.md's layout table still describe the action as
    controller-only, but it now runs pci_facts on the node (one SSH round trip; it needs the connection,
    become and a Python on the node, and fails when the node is unreachable)."""
    header = (REPO / "plugins" / "modules" / "passthrough_plan.py").read_text().splitlines()[3]
    assert "controller only" not in header, header
    layout = (REPO / "DEVELOPMENT.md").read_text()
    assert "the role's one planning step on the controller" not in layout
