# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The passthrough role's one planning step, on the controller: plan, render, compare, decide.

Docs: plugins/modules/passthrough_plan.py. Every decision is made in module_utils (_compose.plan_node,
_changes.step); this file only renders the plan's templates with the role's search path and hands
the texts over. Nothing reaches the node.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import step
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node

ARGUMENT_SPEC = {
    "facts": {"type": "dict", "required": True},
    "inputs": {"type": "dict", "required": True},
    "files": {"type": "dict", "default": {}},
    "notes": {"type": "bool", "default": True},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _requires_connection = False  # ansible-core 2.15+: no connection is opened for this action

    def run(self, tmp=None, task_vars=None):
        del tmp  # no effect
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        check_mode = bool(self._play_context.check_mode)
        plan = plan_node(args["facts"], args["inputs"], args["files"] or {})
        rendered = self._render(plan, task_vars) if not plan["errors"] else []
        result.update(step(plan, args["facts"], args["files"] or {}, rendered, check_mode, args["notes"]),
                      plan=plan, changed=False)
        result["quiet"] = not result["report"]
        return result

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
