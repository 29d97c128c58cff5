# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The passthrough role's one step before any write: discover, plan, render, compare, decide.

Docs: plugins/modules/passthrough_plan.py. Every decision is made in module_utils (_compose.plan_node,
_changes.step); this file runs pci_facts on the node with the paths the plan needs, renders the plan's
templates with the role's search path and hands the texts over. Discovery and planning are one task on
purpose: a converged run's cost is its tasks per host, and the facts reach the planner without being
templated again.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import step
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node, watched_paths

ARGUMENT_SPEC = {
    "facts": {"type": "dict"},
    "files": {"type": "dict"},
    "inputs": {"type": "dict"},
    "notes": {"type": "bool", "default": True},
    # Where discovery reads the node (tests point them at fake trees); only without `facts`. Strings: pci_facts
    # expands ~ and $VARS on the node, as it did when the role called it as a task.
    "sysfs_root": {"type": "str"},
    "procfs_root": {"type": "str"},
}
DISCOVERY = "vfio.proxmox.pci_facts"
# What the planner sees when `inputs` is not given: the role's variables passthrough_<name>, without the prefix.
ROLE_INPUTS = ("state", "devices", "bind_method", "bind_now", "reboot", "iommu_pt", "extra_cmdline",
               "blacklist_drivers", "boot_loader", "adopt", "sriov")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        del tmp  # no effect
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC,
                                                        mutually_exclusive=[("facts", "sysfs_root"),
                                                                            ("facts", "procfs_root")])
        check_mode = bool(self._play_context.check_mode)
        inputs = args["inputs"] if args["inputs"] is not None else self._role_inputs(task_vars)
        facts, files = args["facts"], args["files"]
        if facts is None:
            seen = self._discover(args, task_vars)
            if seen.get("failed") or seen.get("unreachable"):
                return seen
            facts, files = seen["ansible_facts"], seen["files"]
            # Set as pci_facts sets them: the role's later tasks read the node from these facts.
            result["ansible_facts"] = facts
            result["warnings"] = seen.get("warnings", [])
            result["deprecations"] = seen.get("deprecations", [])
        files = files or {}
        plan = plan_node(facts, inputs, files)
        rendered = self._render(plan, task_vars) if not plan["errors"] else []
        result.update(step(plan, facts, files, rendered, check_mode, args["notes"]),
                      plan=plan, changed=False, check_mode=check_mode)
        result["quiet"] = not result["report"]
        return result

    def _role_inputs(self, task_vars: dict) -> dict:
        """The role's variables, templated one by one: a literal value (the usual case) costs no template."""
        missing = ["passthrough_" + name for name in ROLE_INPUTS if "passthrough_" + name not in task_vars]
        if missing:
            raise AnsibleActionFail("passthrough_plan: inputs not given, and %s not defined (the passthrough "
                                    "role's defaults define them)" % ", ".join(missing))
        return {name: self._templar.template(task_vars["passthrough_" + name]) for name in ROLE_INPUTS}

    def _discover(self, args: dict, task_vars: dict) -> dict:
        """pci_facts on the node, looking at and reading every path the plan needs."""
        watch = watched_paths()
        return self._execute_module(module_name=DISCOVERY, task_vars=task_vars, module_args={
            "sysfs_root": args["sysfs_root"] or "/sys", "procfs_root": args["procfs_root"] or "/proc",
            "files": watch["paths"], "read_files": watch["read"]})

    def _render(self, plan: dict, task_vars: dict) -> list[str]:
        """The texts of the plan's templated files, in the plan's order, from the role's templates/.

        The template lookup finds them on the task's search path (the role first) and adds
        ansible_managed; the templates read passthrough_plan only.
        """
        names = [f["template"] for f in plan["files"] if f["template"]]
        if not names:
            return []
        variables = {"ansible_search_path": task_vars.get("ansible_search_path") or [], "passthrough_plan": plan}
        if "ansible_managed" in task_vars:
            variables["ansible_managed"] = task_vars["ansible_managed"]
        lookup = self._shared_loader_obj.lookup_loader.get("ansible.builtin.template", loader=self._loader,
                                                           templar=self._templar)
        return [str(text) for text in lookup.run(names, variables=variables)]
