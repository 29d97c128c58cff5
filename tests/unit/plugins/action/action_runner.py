"""Runs the passthrough_plan action plugin once, in its own process, as a playbook run would: Ansible's plugin
loader initialised, the role's directory on the search path. JSON in (stdin: args, check_mode, role, collections,
`node`: what pci_facts returns on the node, when the step discovers, and `task_vars`) and out (stdout: the result, with
`runner_calls`: the modules the step ran on the node). The node is a stand-in: no connection runs here; the
tests build its answer with discovery's own code (gather) from a fake tree. A process of its own because
importing the controller's code marks the process as the controller, which changes how modules run in-process
by other unit tests report their warnings."""

from __future__ import annotations

import json
import sys
from unittest import mock


def main() -> None:
    given = json.load(sys.stdin)
    sys.path.insert(0, given["collections"])
    try:
        from ansible.plugins.loader import init_plugin_loader
    except ImportError:  # ansible-core 2.14
        from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

        _AnsibleCollectionFinder(paths=[given["collections"]])._install()
    else:
        init_plugin_loader([given["collections"]])
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins import loader as plugin_loader
    from ansible.template import Templar

    from ansible_collections.vfio.proxmox.plugins.action.passthrough_plan import ActionModule

    task = mock.MagicMock(args=given["args"], async_val=0, action="vfio.proxmox.passthrough_plan",
                          check_mode=given["check_mode"])
    play_context = mock.MagicMock(check_mode=given["check_mode"])
    loader = DataLoader()
    task_vars = dict(given.get("task_vars") or {}, ansible_search_path=[given["role"]])
    try:  # ansible-core 2.19+ renders only strings trusted as templates, as an inventory's or a role's are
        from ansible.template import trust_as_template
    except ImportError:  # older cores render every string
        pass
    else:
        task_vars = {name: trust_as_template(value) if isinstance(value, str) and "{{" in value else value
                     for name, value in task_vars.items()}
    # The task's templar knows its variables, as in a playbook run.
    templar = Templar(loader=loader, variables=task_vars)
    action = ActionModule(task, mock.MagicMock(), play_context, loader, templar, plugin_loader)
    calls = []

    def execute_module(module_name=None, module_args=None, task_vars=None, **_kwargs):
        calls.append({"module": module_name, "args": module_args})
        if "node" not in given:
            raise AssertionError("the step ran %s on the node, and the test gave no node" % module_name)
        return given["node"]

    action._execute_module = execute_module
    try:
        result = action.run(task_vars=task_vars)
    except Exception as exc:  # noqa: BLE001 - the test reads the error
        result = {"exception": "%s: %s" % (type(exc).__name__, exc)}
    result["runner_calls"] = calls
    json.dump(result, sys.stdout, default=str)


if __name__ == "__main__":
    main()
