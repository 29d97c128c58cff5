# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The passthrough role's planning filters: the role's YAML only moves what these return.

passthrough_watch: what file_state must look at; passthrough_plan: refusals, decisions and the
whole desired state of every feature (_plan.py, _desired.py, _sriov_plan.py, composed by
_compose.py); passthrough_changes: what this run writes and
rebuilds (_changes.py); passthrough_outcome: drivers after the run and whether to reboot;
passthrough_verify: why the node is not ready yet.
"""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils._changes import changes, outcome, verify
from ansible_collections.vfio.proxmox.plugins.module_utils._compose import plan_node, watched_paths


def passthrough_watch(state: str) -> dict:
    return watched_paths()


def passthrough_plan(facts: dict, inputs: dict, files: dict | None = None) -> dict:
    return plan_node(facts, inputs, files or {})


def passthrough_changes(plan: dict, files: dict, rendered: list, check_mode: bool = False) -> dict:
    return changes(plan, files, list(rendered), bool(check_mode))


def passthrough_outcome(plan: dict, bind_results: list | None = None) -> dict:
    return outcome(plan, bind_results)


def passthrough_verify(plan: dict, facts: dict) -> list:
    return verify(plan, facts)


class FilterModule:
    """vfio.proxmox planning filters."""

    def filters(self):
        return {"passthrough_watch": passthrough_watch, "passthrough_plan": passthrough_plan,
                "passthrough_changes": passthrough_changes, "passthrough_outcome": passthrough_outcome,
                "passthrough_verify": passthrough_verify}
