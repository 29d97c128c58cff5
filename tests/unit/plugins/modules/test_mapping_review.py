"""Findings of an independent review of the mapping feature (issue 20): each test failed before its fix and
states the harm it shows. They run against the pvesh/qm test double (tests/sim/pvesh_double.py), whose rules
cite Proxmox's sources, on the fake node trees of tests/sim.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import pci_mapping, vm_hostpci
from tests.unit.module_args import patch_module_args

PVE1 = {"node": "pve1", "path": "0000:02:00.0", "id": "8086:15f3", "subsystem_id": "8086:0000", "iommugroup": 12}
PVE1_TEXT = "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12"
GUI_PVE2 = "node=pve2,path=0000:01:00.1,id=8086:1521,description=made in the GUI"


@pytest.fixture
def cluster(tmp_path, fake_node, monkeypatch, proxmox_commands):
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
            **proxmox_commands}


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


# 4. Check mode says "ok, would change" where the real run fails.

def test_check_mode_predicts_proxmox_refusing_another_nodes_entry(cluster, capsys):
    """Harm: `--check` reports a clean create, the real run then fails (Proxmox's check on pve2 refuses the id) -
    the dry run an administrator relies on before a maintenance window lies."""
    wrong = dict(pve2_entry(cluster), id="8086:10c9")  # pve2's port is 8086:1521
    checked, predicted = mapping_run(capsys, cluster, {"entries": [PVE1, wrong]}, check=True)
    failed, result = mapping_run(capsys, cluster, {"entries": [PVE1, wrong]})
    assert failed, "the real run fails (Proxmox's check-node on pve2)"
    assert checked == failed, "check mode predicted %r, the real run failed: %s" % (predicted, result["msg"])


def test_check_mode_of_vm_hostpci_predicts_a_vm_that_qm_refuses(cluster, capsys):
    """Harm: a VM whose other line already stops it from starting: --check says the mapping would be added; the
    real run writes it, qm showcmd refuses, takes it out and fails."""
    seed(cluster, {"wan": {"map": [PVE1_TEXT]}},
         vms={"100": {"node": "pve1", "config": {"hostpci0": "0000:0a:00.0"}}})  # no such device on pve1
    checked, predicted = hostpci_run(capsys, cluster, {}, check=True)
    failed, result = hostpci_run(capsys, cluster, {})
    assert failed, result
    assert checked == failed, "check mode predicted %r, the real run failed: %s" % (predicted, result["msg"])


# 5. Rollback deletes what others added.

def test_undone_of_a_created_mapping_keeps_entries_others_added_since(cluster, capsys):
    """Harm: the collection created `wan` for pve1; the administrator later added pve2's port in the GUI; the
    rollback deletes the whole mapping, pve2's entry included - though writes promise never to touch other nodes'
    entries."""
    failed, result = mapping_run(capsys, cluster, {"entries": [PVE1], "record": cluster["record"]})
    assert not failed and result["action"] == "create", result.get("msg")
    edit(cluster, lambda s: s["mapping_pci"]["wan"]["map"].append(GUI_PVE2))
    failed, result = mapping_run(capsys, cluster, {"state": "undone", "record": cluster["record"]})
    assert not failed, result.get("msg")
    assert GUI_PVE2 in (state(cluster)["mapping_pci"].get("wan") or {}).get("map", []), "pve2's GUI entry is gone"


# 6. Rollback puts back, silently, a mapping that fails every VM start.

def test_undone_reports_a_former_state_the_hardware_no_longer_matches(cluster, capsys):
    """Harm: after a card swap the run mapped the new card (allow_hardware_change); the rollback restores the old
    id with no check and reports success - every VM using the mapping then fails to start on pve1."""
    seed(cluster, {"wan": {"map": [PVE1_TEXT]}})
    sysfs_file(cluster, "pve1", "0000:02:00.0", "device").write_text("0x125c\n")  # the card was swapped
    failed, result = mapping_run(capsys, cluster, {"entries": [dict(PVE1, id="8086:125c")],
                                                   "allow_hardware_change": True, "record": cluster["record"]})
    assert not failed and result["action"] == "update", result.get("msg")
    failed, result = mapping_run(capsys, cluster, {"state": "undone", "record": cluster["record"]})
    assert state(cluster)["mapping_pci"]["wan"]["map"] == [PVE1_TEXT], "restored as recorded"
    assert failed or any(c.get("severity") == "error" for found in result.get("checks", {}).values() for c in found), \
        "the restored mapping fails Proxmox's check on pve1, and the rollback says nothing: %r" % result


# 7. An entry we cannot parse, for a node the task decides, blocks every write.

def test_a_broken_entry_of_a_node_the_task_decides_is_replaced(cluster, capsys):
    """Harm: a hand-edited entry for pve1 with a typo (`iommugrup=12`; Proxmox skips it, so no VM starts on pve1)
    is kept next to the new one and sent back to Proxmox, which refuses the whole update - the task that decides
    pve1 can never repair pve1's entry."""
    broken = "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugrup=12"
    seed(cluster, {"wan": {"map": [broken, GUI_PVE2]}})
    failed, result = mapping_run(capsys, cluster, {"entries": [PVE1]})
    assert not failed, result.get("msg")
    assert state(cluster)["mapping_pci"]["wan"]["map"] == [GUI_PVE2, PVE1_TEXT]


# 8. The record keeps only the oldest `before`: a node first decided by a later write is restored wrongly.

def test_undone_restores_what_a_later_write_overwrote_on_a_node_it_first_decided(cluster, capsys):
    """Harm: run 1 decides pve1; the administrator then edits pve2's entry in the GUI; run 2 (now covering pve2)
    overwrites it; the rollback puts back pve2's entry from before run 1, so the administrator's edit is lost for
    good though the record claimed to hold the former state of every change."""
    seed(cluster, {"wan": {"map": [GUI_PVE2]}})
    mapping_run(capsys, cluster, {"entries": [PVE1], "record": cluster["record"]})
    edited = GUI_PVE2.replace("made in the GUI", "edited later")
    edit(cluster, lambda s: s["mapping_pci"]["wan"].update(map=[edited, PVE1_TEXT]))
    failed, result = mapping_run(capsys, cluster, {"entries": [PVE1, pve2_entry(cluster)], "record": cluster["record"]})
    assert not failed and result["action"] == "update", result.get("msg")
    failed, result = mapping_run(capsys, cluster, {"state": "undone", "record": cluster["record"]})
    assert not failed, result.get("msg")
    assert edited in state(cluster)["mapping_pci"]["wan"]["map"], state(cluster)["mapping_pci"]["wan"]["map"]
