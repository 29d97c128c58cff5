"""The passthrough role's one source of truth: argument_specs and defaults agree."""

from __future__ import annotations

from pathlib import Path

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
    from ansible_collections.vfio.proxmox.plugins.module_utils._plan import OPTION_KEYS, SELECTOR_KEYS

    item = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]["passthrough_devices"]["options"]
    assert sorted(item) == sorted(SELECTOR_KEYS + OPTION_KEYS)
    assert all(item[k]["type"] == "bool" and item[k]["default"] is False for k in ("force", "allow_group"))
    assert all(spec.get("description") for spec in item.values())
