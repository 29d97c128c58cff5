"""Findings of an independent review of the mapping feature (issue 20): each test failed before its fix and
states the harm it shows. They run against the pvesh/qm test double (tests/sim/pvesh_double.py), whose rules
cite Proxmox's sources, on the fake node trees of tests/sim.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import pci_mapping, vm_hostpci
from tests.unit.module_args import patch_module_args

REPO = Path(__file__).resolve().parents[4]
DOUBLE = REPO / "tests" / "sim" / "pvesh_double.py"
PVE1 = {"node": "pve1", "path": "0000:02:00.0", "id": "8086:15f3", "subsystem_id": "8086:0000", "iommugroup": 12}
PVE1_TEXT = "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12"
GUI_PVE2 = "node=pve2,path=0000:01:00.1,id=8086:1521,description=made in the GUI"


def commands(tmp_path) -> dict:
    out = {}
    for name, prefix in (("pvesh", ""), ("qm", " qm")):
        command = tmp_path / name
        command.write_text('#!/bin/sh\nexec "%s" "%s"%s "$@"\n' % (sys.executable, DOUBLE, prefix))
        command.chmod(0o755)
        out[name] = str(command)
    return out


@pytest.fixture
def cluster(tmp_path, fake_node, monkeypatch):
    """pve1 (this node, guide-intel) and pve2 (dual-port-igb), one shared cluster state."""
    pve1, pve2 = fake_node("guide-intel"), fake_node("dual-port-igb")
    state = tmp_path / "pve-state.json"
    state.write_text(json.dumps({"nodes": ["pve1", "pve2"], "mapping_pci": {}}))
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(state))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    monkeypatch.setenv("PVESH_DOUBLE_SYSFS", pve1.roots["sysfs_root"])
    monkeypatch.setenv("PVESH_DOUBLE_PEERS", json.dumps({"pve2": pve2.roots["sysfs_root"]}))
    monkeypatch.setattr(socket, "gethostname", lambda: "pve1")
    return {"state": state, "pve1": pve1, "pve2": pve2, "record": str(tmp_path / "mappings.json"),
            **commands(tmp_path)}


def pve2_entry(cluster) -> dict:
    sysfs = Path(cluster["pve2"].roots["sysfs_root"], "bus", "pci", "devices", "0000:01:00.1")
    group = int(Path(sysfs, "iommu_group").resolve().name)
    sub = "%s:%s" % tuple((sysfs / f).read_text().strip()[2:] for f in ("subsystem_vendor", "subsystem_device"))
    return {"node": "pve2", "path": "0000:01:00.1", "id": "8086:1521", "subsystem_id": sub, "iommugroup": group}


def mapping_run(capsys, cluster, args: dict, check: bool = False) -> tuple[bool, dict]:
    args = dict({"name": "wan", "node": "pve1", "pvesh": cluster["pvesh"],
                 "_ansible_check_mode": check, "_ansible_diff": True}, **args)
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        pci_mapping.main()
    return exited.value.code != 0, json.loads(capsys.readouterr().out)


def hostpci_run(capsys, cluster, args: dict, check: bool = False) -> tuple[bool, dict]:
    args = dict({"vmid": 100, "mapping": "wan", "pvesh": cluster["pvesh"], "qm": cluster["qm"],
                 "_ansible_check_mode": check, "_ansible_diff": True}, **args)
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        vm_hostpci.main()
    return exited.value.code != 0, json.loads(capsys.readouterr().out)


def state(cluster) -> dict:
    return json.loads(cluster["state"].read_text())


def seed(cluster, mapping_pci: dict, vms: dict | None = None) -> None:
    cluster["state"].write_text(json.dumps({"nodes": ["pve1", "pve2"], "mapping_pci": mapping_pci,
                                            "vms": vms or {}}))


def edit(cluster, change) -> None:
    held = state(cluster)
    change(held)
    cluster["state"].write_text(json.dumps(held))


def sysfs_file(cluster, node: str, address: str, name: str) -> Path:
    return Path(cluster[node].roots["sysfs_root"], "bus", "pci", "devices", address, name)


@pytest.mark.parametrize("group", ["012", "+12"])
def test_an_iommugroup_proxmox_compares_as_a_string_is_rewritten(cluster, capsys, group):
    """Harm: an entry with iommugroup=012 or +12 (schema-valid; Terraform or a hand edit) fails every VM start
    (assert_valid compares strings, RULES.md section 2), but the module reads it as 12, sees no difference and
    fails on every run with Proxmox's error instead of rewriting it - unlike an uppercase id, which it repairs."""
    seed(cluster, {"wan": {"map": [PVE1_TEXT.replace("iommugroup=12", "iommugroup=%s" % group)]}})
    failed, result = mapping_run(capsys, cluster, {"entries": [PVE1]})
    assert not failed and result["action"] == "update", result.get("msg")
    assert state(cluster)["mapping_pci"]["wan"]["map"] == [PVE1_TEXT]


@pytest.mark.parametrize("extra", ["x-vga=1", "romfile=vbios.bin", "rombar=0", "driver=keep"])
def test_options_the_admin_set_on_the_line_are_kept(cluster, capsys, extra):
    """Harm: a GPU line `mapping=gpu,x-vga=1,romfile=vbios.bin` (set in the GUI because the card needs it) is
    rewritten to a bare `mapping=gpu` on the next playbook run: the guest loses its display / ROM at next start."""
    seed(cluster, {"wan": {"map": [PVE1_TEXT]}},
         vms={"100": {"node": "pve1", "config": {"machine": "q35", "hostpci0": "mapping=wan," + extra}}})
    failed, result = hostpci_run(capsys, cluster, {})
    assert not failed, result.get("msg")
    assert extra in state(cluster)["vms"]["100"]["config"]["hostpci0"], "the administrator's option was dropped"


@pytest.mark.parametrize("record", [
    {"changed": {"wan": {"nodes": ["pve1"]}}},
    {"attached": [{"vmid": 100}]},
])
def test_a_partial_record_is_refused_by_path_not_a_traceback(cluster, capsys, record):
    """Harm: a record cut short (hand-edited, an older format) makes state=undone die with a Python KeyError
    instead of a message naming the file to fix; the rollback stops with no hint."""
    seed(cluster, {"wan": {"map": [PVE1_TEXT]}})
    Path(cluster["record"]).write_text(json.dumps(record))
    failed, result = mapping_run(capsys, cluster, {"state": "undone", "record": cluster["record"]})
    assert failed and cluster["record"] in result["msg"], result
