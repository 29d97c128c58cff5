"""Driving pve_guests and pve_evacuate against the Proxmox TEST DOUBLE (tests/sim/pvesh_double.py) on a cluster
state file: the helpers test_pve_evacuate.py and review21 share. `cluster` is their fixture's dict - the
double's commands (proxmox_commands) and `state`, the state file; the node rebooting is pve1."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import pve_evacuate, pve_guests
from tests.unit.module_args import patch_module_args


def read_state(cluster) -> dict:
    return json.loads(cluster["state"].read_text())


def edit(cluster, change) -> None:
    state = read_state(cluster)
    change(state)
    cluster["state"].write_text(json.dumps(state))


def where(cluster) -> dict:
    return {vmid: g["node"] for vmid, g in read_state(cluster)["vms"].items()}


def call(module, capsys, args) -> tuple[bool, dict]:
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    return exited.value.code != 0, json.loads(capsys.readouterr().out)


def guests(capsys, cluster, **args) -> dict:
    failed, result = call(pve_guests, capsys, dict({"node": "pve1", "pvesh": cluster["pvesh"], "policy": "migrate"},
                                                   **args))
    assert not failed, result
    return result


def evacuate(capsys, cluster, state, decided, **args) -> tuple[bool, dict]:
    return call(pve_evacuate, capsys, dict({"state": state, "node": "pve1", "pvesh": cluster["pvesh"],
                                            "ha_manager": cluster["ha-manager"], "migrate": decided["migrate"],
                                            "ha_maintenance": decided["ha_maintenance"], "timeout": 5}, **args))
