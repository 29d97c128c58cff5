"""The passthrough role's one source of truth: argument_specs and defaults agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "passthrough"


def load(relative: str):
    return yaml.safe_load((ROLE / relative).read_text())


def test_every_default_is_documented_with_the_same_value():
    defaults = load("defaults/main.yml")
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, spec in options.items():
        assert spec["default"] == defaults[name], name
        assert spec.get("description"), name


def test_public_variables_are_prefixed_and_internal_ones_double_underscored():
    assert all(name.startswith("passthrough_") for name in load("defaults/main.yml"))
    assert all(name.startswith("__passthrough_") for name in load("vars/main.yml"))


def test_choices_match_what_the_planner_accepts():
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert options["passthrough_bind_method"]["choices"] == ["auto", "ids", "address"]
    assert options["passthrough_boot_loader"]["choices"] == ["auto", "grub", "systemd-boot"]
    assert options["passthrough_reboot"]["choices"] == ["never", "if_needed"]
    assert options["passthrough_state"]["choices"] == ["present", "absent"]


def test_device_item_options_are_the_keys_the_planner_accepts():
    from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import OPTION_KEYS, SELECTOR_KEYS

    item = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]["passthrough_devices"]["options"]
    assert sorted(item) == sorted(SELECTOR_KEYS + OPTION_KEYS)
    assert all(item[k]["type"] == "bool" and item[k]["default"] is False for k in ("force", "allow_group"))
    assert all(spec.get("description") for spec in item.values())


READ = re.compile(r"(?<![\w.])passthrough_[a-z_]+")  # not a filter such as vfio.proxmox.passthrough_plan


def set_or_tag_names(node) -> set[str]:
    """Names the role itself sets (set_fact keys, register, task vars) and its tags."""
    names: set[str] = set()
    if isinstance(node, list):
        for item in node:
            names |= set_or_tag_names(item)
    elif isinstance(node, dict):
        names |= set(node.get("ansible.builtin.set_fact") or {}) | set(node.get("vars") or {})
        names |= {node["register"]} if "register" in node else set()
        names |= set(node.get("tags") or []) | set((node.get("apply") or {}).get("tags") or [])
        for value in node.values():
            names |= set_or_tag_names(value)
    return names


def task_files(entry: str) -> list[Path]:
    """The entry point's task file and every file it imports or includes, transitively."""
    seen: list[Path] = []
    todo = [ROLE / "tasks" / entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        included = re.findall(r"(?:import_tasks:|file:)\s*(\S+\.yml)", path.read_text())
        todo += [ROLE / "tasks" / name for name in included]
    return seen


def names_read(paths: list[Path]) -> set[str]:
    """Variables the files read; the planning step reads the role's inputs itself (its ROLE_INPUTS)."""
    from ansible_collections.vfio.proxmox.plugins.action.passthrough_plan import ROLE_INPUTS

    read = set().union(*(READ.findall(p.read_text()) for p in paths))
    if any("vfio.proxmox.passthrough_plan:" in p.read_text() for p in paths):
        read |= {"passthrough_" + name for name in ROLE_INPUTS}
    made = set().union(*(set_or_tag_names(yaml.safe_load(p.read_text())) for p in paths if p.suffix == ".yml"))
    return read - made - set_or_tag_names(yaml.safe_load((ROLE / "tasks" / "main.yml").read_text()))


def test_every_variable_the_main_entry_point_reads_is_declared_and_nothing_declared_is_unused():
    shared = [ROLE / "vars" / "main.yml", *sorted((ROLE / "templates").iterdir())]
    read = names_read(task_files("main.yml") + shared)
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(read) == sorted(options)


@pytest.mark.parametrize("entry", ["verify_only", "plan_only"])
def test_other_entry_points_validate_against_the_main_entry_point_and_read_only_its_variables(entry):
    """Their variables are documented once, under main (one option table on the role's page): each validates
    them against main's specification first, and reads nothing main does not declare."""
    specs = load("meta/argument_specs.yml")["argument_specs"]
    assert "options" not in specs[entry]
    tasks = yaml.safe_load((ROLE / "tasks" / ("%s.yml" % entry)).read_text())
    first = tasks[0]["ansible.builtin.validate_argument_spec"]["argument_spec"]
    assert "meta/argument_specs.yml" in first and first.rstrip("} ").endswith(".argument_specs.main.options")
    shared = [ROLE / "vars" / "main.yml", *sorted((ROLE / "templates").iterdir())]
    assert names_read(task_files("%s.yml" % entry) + shared) <= set(specs["main"]["options"])


def test_sriov_item_options_are_the_keys_the_sriov_planner_accepts():
    from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import (
        LINK_STATES,
        PF_OPTIONS,
        PF_SELECTORS,
        VF_DRIVERS,
        VF_KEYS,
    )

    item = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]["passthrough_sriov"]["options"]
    assert sorted(item) == sorted(PF_SELECTORS + PF_OPTIONS)
    assert item["vf_driver"]["choices"] == list(VF_DRIVERS) and item["vf_driver"]["default"] == "none"
    assert item["vf_macs"]["choices"] == ["derive", "keep"]
    assert sorted(item["vf"]["options"]) == sorted(VF_KEYS)
    assert item["vf"]["options"]["state"]["choices"] == list(LINK_STATES)


PLAYBOOKS = ROLE.parents[1] / "playbooks"


def test_the_sriov_playbook_is_the_role_so_passthrough_devices_are_planned_with_it():
    """Issue 19: the shipped playbook planned SR-IOV with an empty passthrough_devices list."""
    (play,) = yaml.safe_load((PLAYBOOKS / "sriov.yml").read_text())
    assert play["roles"] == [{"role": "vfio.proxmox.passthrough"}] and "tasks" not in play
    from ansible_collections.vfio.proxmox.plugins.action.passthrough_plan import ROLE_INPUTS

    (step,) = [t for t in load("tasks/preflight.yml") if "vfio.proxmox.passthrough_plan" in t]
    # No inputs given: the step reads every role input itself, passthrough_devices and passthrough_sriov among them.
    assert "inputs" not in step["vfio.proxmox.passthrough_plan"]
    assert {"devices", "sriov"} <= set(ROLE_INPUTS)


def test_the_sriov_unit_is_enabled_through_systemd_with_a_daemon_reload_and_no_hand_made_link():
    """Issue 19: the unit was enabled with ansible.builtin.file state=link and no daemon-reload."""
    tasks = load("tasks/configure.yml")
    enable = [t for t in tasks if (t.get("ansible.builtin.systemd_service") or {}).get("enabled") is True]
    assert len(enable) == 1 and enable[0]["ansible.builtin.systemd_service"]["daemon_reload"] is True
    assert enable[0]["loop"] == "{{ __passthrough_changes.units.enable }}"
    disable = [t for t in tasks if (t.get("ansible.builtin.systemd_service") or {}).get("enabled") is False]
    writes = [i for i, t in enumerate(tasks) if "vfio.proxmox.owned_files" in t]
    assert tasks.index(disable[0]) < writes[0] < tasks.index(enable[0])
    for path in list(ROLE.glob("tasks/*.yml")) + list(PLAYBOOKS.glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for play_task in [task] + list(task.get("tasks") or []):
                assert (play_task.get("ansible.builtin.file") or {}).get("state") != "link", path
