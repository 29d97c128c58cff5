"""pci_mapping against the pvesh test double (tests/sim/pvesh_double.py), on fake node trees.

Two nodes of one cluster: pve1 (this node, the guide's host) and pve2 (the dual-port host),
each with its own fake sysfs; the double's state file is the cluster's mapping config.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import pci_mapping
from tests.unit.module_args import patch_module_args

PVE1 = {"node": "pve1", "path": "0000:02:00.0", "id": "8086:15f3", "subsystem_id": "8086:0000", "iommugroup": 12}


@pytest.fixture
def cluster(tmp_path, fake_node, monkeypatch, proxmox_commands):
    pvesh = proxmox_commands["pvesh"]
    pve1, pve2 = fake_node("guide-intel"), fake_node("dual-port-igb")
    state = tmp_path / "pve-state.json"
    state.write_text(json.dumps({"nodes": ["pve1", "pve2"], "mapping_pci": {}}))
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(state))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    monkeypatch.setenv("PVESH_DOUBLE_SYSFS", pve1.roots["sysfs_root"])
    monkeypatch.setenv("PVESH_DOUBLE_PEERS", json.dumps({"pve2": pve2.roots["sysfs_root"]}))
    return {"state": state, "pve1": pve1, "pve2": pve2, "pvesh": pvesh}


def pve2_entry(cluster) -> dict:
    sysfs = Path(cluster["pve2"].roots["sysfs_root"], "bus", "pci", "devices", "0000:01:00.1")
    group = int(Path(sysfs, "iommu_group").resolve().name)
    sub = "%s:%s" % tuple((sysfs / f).read_text().strip()[2:] for f in ("subsystem_vendor", "subsystem_device"))
    return {"node": "pve2", "path": "0000:01:00.1", "id": "8086:1521", "subsystem_id": sub, "iommugroup": group}


def run_captured(capsys, cluster, args: dict, **kw) -> tuple[bool, dict]:
    args = dict({"name": "wan", "node": "pve1", "pvesh": cluster["pvesh"],
                 "_ansible_check_mode": kw.get("check", False), "_ansible_diff": kw.get("diff", False)}, **args)
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        pci_mapping.main()
    return exited.value.code != 0, json.loads(capsys.readouterr().out)


def mappings(cluster) -> dict:
    return json.loads(cluster["state"].read_text())["mapping_pci"]


def test_creates_once_then_changes_nothing(cluster, capsys):
    args = {"entries": [PVE1, pve2_entry(cluster)], "description": "WAN port"}
    failed, result = run_captured(capsys, cluster, args, check=True, diff=True)
    assert not failed and result["changed"] and result["action"] == "create"
    assert result["diff"]["before"] is None and len(result["diff"]["after"]["map"]) == 2
    assert mappings(cluster) == {}, "check mode wrote"

    failed, result = run_captured(capsys, cluster, args)
    assert not failed and result["action"] == "create", result["msg"]
    assert result["checks"] == {"pve1": [], "pve2": []}
    assert mappings(cluster)["wan"]["map"] == [
        "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12",
        "node=pve2,path=0000:01:00.1,id=8086:1521,subsystem-id=%s,iommugroup=%d"
        % (pve2_entry(cluster)["subsystem_id"], pve2_entry(cluster)["iommugroup"])]

    failed, result = run_captured(capsys, cluster, args)
    assert not failed and not result["changed"] and result["action"] is None
    assert not [c for c in result["commands"] if c[1] in ("create", "set", "delete")]


def test_a_mapping_written_by_the_gui_in_another_order_is_already_right(cluster, capsys):
    gui = "iommugroup=12,node=pve1,subsystem-id=8086:0000,path=0000:02:00.0,id=8086:15f3"
    cluster["state"].write_text(json.dumps({"nodes": ["pve1", "pve2"], "mapping_pci": {"wan": {"map": [gui]}}}))
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1]})
    assert not failed and not result["changed"], result.get("msg")


def test_an_uppercase_id_that_fails_every_vm_start_is_rewritten(cluster, capsys):
    upper = "node=pve1,path=0000:02:00.0,id=8086:15F3,subsystem-id=8086:0000,iommugroup=12"
    cluster["state"].write_text(json.dumps({"nodes": ["pve1", "pve2"], "mapping_pci": {"wan": {"map": [upper]}}}))
    failed, result = run_captured(capsys, cluster, {"entries": [dict(PVE1, id="8086:15F3")]})
    assert not failed and result["action"] == "update", result.get("msg")
    assert result["checks"] == {"pve1": []}
    assert mappings(cluster)["wan"]["map"] == [upper.replace("15F3", "15f3")]


def test_update_carries_the_digest_and_removes_a_description_only_when_told(cluster, capsys):
    run_captured(capsys, cluster, {"entries": [PVE1], "description": "old"})
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1, pve2_entry(cluster)]})
    assert not failed and result["action"] == "update"
    update = [c for c in result["commands"] if c[1] == "set"][0]
    assert "--digest" in update and "--delete" not in update
    assert mappings(cluster)["wan"]["description"] == "old"


@pytest.mark.parametrize(("entry", "message"), [
    (dict(PVE1, id="8086:125c"), "entries for node pve1 do not match its hardware: 'id' does not match for device "
                                 "'0000:02:00.0' (hardware 8086:15f3, mapping 8086:125c)"),
    ({k: v for k, v in PVE1.items() if k != "iommugroup"}, "missing expected property 'iommugroup'"),
    (dict(PVE1, node="pve3"), "node 'pve3' is not a member of this cluster (members: pve1, pve2)"),
    (dict(PVE1, path="2:00.0"), "path '2:00.0' is not a PCI address"),
])
def test_refusals_come_before_any_write(cluster, capsys, entry, message):
    failed, result = run_captured(capsys, cluster, {"entries": [entry]})
    assert failed and message in result["msg"], result["msg"]
    assert mappings(cluster) == {}
    assert not [c for c in result["commands"] if c[1] in ("create", "set", "delete")]


def test_a_bad_entry_for_another_node_is_refused_before_any_write(cluster, capsys):
    wrong = dict(pve2_entry(cluster), id="8086:10c9")  # pve2's port is 8086:1521
    for check in (True, False):  # check mode predicts the refusal
        failed, result = run_captured(capsys, cluster, {"entries": [PVE1, wrong]}, check=check)
        assert failed and "entries for node pve2 do not match its hardware: 'id' does not match for device " \
                          "'0000:01:00.1' (hardware 8086:1521, mapping 8086:10c9)" in result["msg"], result["msg"]
        assert mappings(cluster) == {}


def failing_check_pvesh(cluster, tmp_path, how: str) -> str:
    """The double behind a wrapper that makes Proxmox's check-node answer `how` (an error check, or a failed call)
    - what only Proxmox sees after a write, to prove the write is undone and the record kept."""
    wrapper = tmp_path / "pvesh-check-fails"
    wrapper.write_text(
        "#!%s\nimport json, subprocess, sys\n"
        "if '--check-node' in sys.argv:\n"
        "    if %r == 'call':\n        sys.exit('pvesh: connection to node refused')\n"
        "    out = json.loads(subprocess.run([%r] + sys.argv[1:], capture_output=True, text=True).stdout)\n"
        "    for m in out:\n"
        "        m['checks'] = [{'severity': 'error', 'message': 'Invalid configuration: injected'}]\n"
        "    print(json.dumps(out))\nelse:\n    sys.exit(subprocess.run([%r] + sys.argv[1:]).returncode)\n"
        % (sys.executable, how, cluster["pvesh"], cluster["pvesh"]))
    wrapper.chmod(0o755)
    return str(wrapper)


def test_an_error_only_proxmox_sees_after_the_write_undoes_it(cluster, capsys, tmp_path):
    record = tmp_path / "mappings.json"
    pvesh = failing_check_pvesh(cluster, tmp_path, "check")
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "pvesh": pvesh, "record": str(record)})
    assert failed and "Proxmox refuses the mapping - pve1: Invalid configuration: injected (created mapping deleted " \
                      "again)" in result["msg"], result["msg"]
    assert mappings(cluster) == {} and not record.exists()
    seed(cluster, {"wan": {"map": [GUI_PVE2]}})
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "pvesh": pvesh, "record": str(record)})
    assert failed and "(previous mapping restored)" in result["msg"]
    assert mappings(cluster)["wan"]["map"] == [GUI_PVE2] and not record.exists()


def test_a_device_that_changed_since_fails_the_rerun_and_the_mapping_stays(cluster, capsys):
    run_captured(capsys, cluster, {"entries": [PVE1]})
    device = Path(cluster["pve1"].roots["sysfs_root"], "bus", "pci", "devices", "0000:02:00.0", "device")
    device.write_text("0x125c\n")  # the card was swapped for an I226-V
    # On the node itself: refused before Proxmox is asked.
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1]})
    assert failed and "'id' does not match for device '0000:02:00.0' (hardware 8086:125c, mapping 8086:15f3)" \
        in result["msg"]
    # From another node: pve1's hardware as Proxmox reads it there (hardware/pci, proxied) refuses it too.
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "node": "pve2"})
    assert failed and "entries for node pve1 do not match its hardware: 'id' does not match for device " \
                      "'0000:02:00.0' (hardware 8086:125c, mapping 8086:15f3)" in result["msg"]
    assert mappings(cluster)["wan"]["map"] == [
        "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12"]


def test_absent_deletes_and_then_has_nothing_to_do(cluster, capsys):
    run_captured(capsys, cluster, {"entries": [PVE1]})
    failed, result = run_captured(capsys, cluster, {"state": "absent"})
    assert not failed and result["action"] == "delete" and mappings(cluster) == {}
    failed, result = run_captured(capsys, cluster, {"state": "absent"})
    assert not failed and not result["changed"]


def test_pci_facts_proxmox_mapping_makes_a_valid_entry(cluster, capsys):
    from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather

    facts = gather(**cluster["pve1"].roots, run=cluster["pve1"].run, which=cluster["pve1"].which)["ansible_facts"]
    igc = next(d for d in facts["vfio_pci_devices"] if d["address"] == "0000:02:00.0")
    entry = {key.replace("-", "_"): value for key, value in igc["proxmox_mapping"].items()}
    failed, result = run_captured(capsys, cluster, {"entries": [dict(entry, node="pve1")]})
    assert not failed and result["action"] == "create", result.get("msg")


def test_check_mode_checks_an_unchanged_mapping(cluster, capsys, tmp_path):
    run_captured(capsys, cluster, {"entries": [PVE1]})
    Path(cluster["pve1"].roots["sysfs_root"], "bus", "pci", "devices", "0000:02:00.0", "device").write_text("0x125c\n")
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "node": "pve2"}, check=True)
    assert failed and "entries for node pve1 do not match its hardware: 'id' does not match" in result["msg"]
    # Proxmox's own check of an unchanged mapping runs in check mode too (here: an error only it reports).
    Path(cluster["pve1"].roots["sysfs_root"], "bus", "pci", "devices", "0000:02:00.0", "device").write_text("0x15f3\n")
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "node": "pve2",
                                                    "pvesh": failing_check_pvesh(cluster, tmp_path, "check")},
                                  check=True)
    assert failed and "pve1: Invalid configuration: injected (nothing was written)" in result["msg"], result["msg"]


def test_an_entry_whose_hardware_changed_is_refused_unless_allowed(cluster, capsys):
    run_captured(capsys, cluster, {"entries": [PVE1]})
    Path(cluster["pve1"].roots["sysfs_root"], "bus", "pci", "devices", "0000:02:00.0", "device").write_text("0x125c\n")
    swapped = dict(PVE1, id="8086:125c")  # what the node's plan says now
    failed, result = run_captured(capsys, cluster, {"entries": [swapped]})
    assert failed and "the hardware changed since the mapping was written - node pve1 path 0000:02:00.0: id was " \
                      "8086:15f3, is 8086:125c" in result["msg"]
    failed, result = run_captured(capsys, cluster, {"entries": [swapped], "allow_hardware_change": True})
    assert not failed and result["action"] == "update"
    assert "id=8086:125c" in mappings(cluster)["wan"]["map"][0]


def test_pci_facts_compares_its_view_with_proxmoxs(cluster, capsys, monkeypatch):
    from ansible_collections.vfio.proxmox.plugins.modules import pci_facts

    monkeypatch.setenv("PATH", "%s:%s" % (Path(cluster["pvesh"]).parent, os.environ["PATH"]))
    roots = cluster["pve1"].roots
    hostname = Path(roots["procfs_root"], "sys", "kernel", "hostname")
    hostname.write_text("pve1\n")

    def facts() -> dict:
        with patch_module_args(dict(roots, compare_proxmox=True)), pytest.raises(SystemExit):
            pci_facts.main()
        return json.loads(capsys.readouterr().out)["ansible_facts"]["vfio_proxmox_view"]

    assert facts() == {"checked": True, "reason": None, "differences": []}
    Path(roots["sysfs_root"], "bus", "pci", "devices", "0000:02:00.0", "iommu_group").unlink()
    assert facts()["differences"] == []  # both read the same tree: both lose the group
    monkeypatch.setenv("PVESH_DOUBLE_SYSFS", cluster["pve2"].roots["sysfs_root"])  # Proxmox reads another tree
    assert any("only pci_facts sees it" in d for d in facts()["differences"])


# Issue 20: a mapping is cluster-wide state that the GUI, Terraform and other runs own too.

def seed(cluster, mapping_pci: dict, vms: dict | None = None) -> None:
    state = {"nodes": ["pve1", "pve2"], "mapping_pci": mapping_pci}
    if vms is not None:
        state["vms"] = vms
    cluster["state"].write_text(json.dumps(state))


GUI_PVE2 = "node=pve2,path=0000:01:00.1,id=8086:1521,description=made in the GUI"


def test_a_run_over_part_of_the_cluster_keeps_the_other_nodes_entries(cluster, capsys):
    seed(cluster, {"wan": {"map": [GUI_PVE2], "live-migration-capable": 1, "description": "GUI"}})
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1]}, diff=True)
    assert not failed and result["action"] == "update", result.get("msg")
    assert result["nodes"] == ["pve1"] and result["kept_entries"] == [GUI_PVE2]
    held = mappings(cluster)["wan"]
    assert held["map"] == [GUI_PVE2, "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12"]
    assert held["live-migration-capable"] == 1 and held["description"] == "GUI", "flags and description are kept"
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1]})
    assert not failed and not result["changed"]


def test_a_node_named_with_no_entries_loses_its_entries_and_only_that(cluster, capsys):
    seed(cluster, {"wan": {"map": [GUI_PVE2, "node=pve3,path=0000:05:00.0,id=8086:15f3"]}})
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "nodes": ["pve1", "pve2"]})
    assert not failed, result.get("msg")
    assert mappings(cluster)["wan"]["map"] == [
        "node=pve3,path=0000:05:00.0,id=8086:15f3",
        "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12"]
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "nodes": ["pve2"]})
    assert failed and "entries: node pve1 is not in nodes (pve2)" in result["msg"]


@pytest.mark.parametrize(("args", "message"), [
    ({"entries": [dict(PVE1, description="WAN, port 1")]}, "description 'WAN, port 1' holds a comma"),
    ({"entries": [dict(PVE1, description="two\nlines")]}, "holds a line break"),
    ({"entries": [PVE1], "description": "two\r\nlines"}, "description: 'two\\r\\nlines' holds a line break"),
    ({"entries": [PVE1], "description": "x" * 4097}, "is 4097 characters long; Proxmox takes at most 4096"),
    ({"entries": [PVE1], "description": "WAN \u2192 firewall"}, "holds U+2192 (above U+00FF)"),
    ({"entries": [dict(PVE1, description="\u6771\u4eac")]}, "holds U+4EAC, U+6771 (above U+00FF)"),
])
def test_descriptions_proxmox_cannot_keep_are_refused_before_any_write(cluster, capsys, args, message):
    failed, result = run_captured(capsys, cluster, args)
    assert failed and message in result["msg"], result["msg"]
    assert mappings(cluster) == {}


def test_a_latin1_description_and_a_gui_description_above_latin1_converge(cluster, capsys):
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "description": "Caf\u00e9 WAN"})
    assert not failed and result["action"] == "create", result.get("msg")
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "description": "Caf\u00e9 WAN"})
    assert not failed and not result["changed"]
    # A description the GUI wrote above U+00FF reads back double-encoded; left alone, it stays as it is.
    state = json.loads(cluster["state"].read_text())
    state["mapping_pci"]["wan"]["description"] = "\u00e6\u009d\u00b1\u00e4\u00ba\u00ac"
    cluster["state"].write_text(json.dumps(state))
    for _run in range(2):
        failed, result = run_captured(capsys, cluster, {"entries": [PVE1, pve2_entry(cluster)]})
        assert not failed, result.get("msg")
        assert mappings(cluster)["wan"]["description"] == "\u00e6\u009d\u00b1\u00e4\u00ba\u00ac"
    assert not result["changed"]


def test_the_record_names_a_created_mapping_at_once_even_when_the_run_fails(cluster, capsys, monkeypatch, tmp_path):
    record = tmp_path / "etc" / "vfio-proxmox" / "mappings.json"
    pvesh = failing_check_pvesh(cluster, tmp_path, "call")  # the check after the create cannot reach the node
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1, pve2_entry(cluster)], "record": str(record),
                                                    "pvesh": pvesh})
    assert failed and "connection to node refused" in result["msg"], result["msg"]
    assert "wan" in mappings(cluster), "the create went through"
    assert json.loads(record.read_text())["mappings"] == ["wan"]
    assert oct(record.stat().st_mode & 0o777) == "0o600"


def test_undone_puts_a_mapping_that_existed_before_back_exactly(cluster, capsys, tmp_path):
    record = str(tmp_path / "mappings.json")
    gui_pve1 = "iommugroup=12,node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,description=GUI"
    seed(cluster, {"wan": {"map": [gui_pve1, GUI_PVE2], "mdev": 0, "live-migration-capable": 1}})
    before = json.loads(cluster["state"].read_text())["mapping_pci"]["wan"]
    failed, result = run_captured(capsys, cluster, {"entries": [PVE1], "record": record, "description": "ours",
                                                    "live_migration_capable": False})
    assert not failed and result["action"] == "update", result.get("msg")
    assert json.loads(Path(record).read_text())["changed"]["wan"]["nodes"] == ["pve1"]
    run_captured(capsys, cluster, {"entries": [dict(PVE1, description="second run")], "record": record})
    failed, result = run_captured(capsys, cluster, {"state": "undone", "record": record})
    assert not failed and result["action"] == "restore", result.get("msg")
    assert mappings(cluster)["wan"] == before, "the former mapping, entry order and flags included"
    assert not Path(record).exists(), "nothing left to undo: no record"
    failed, result = run_captured(capsys, cluster, {"state": "undone", "record": record})
    assert not failed and not result["changed"]


def test_undone_keeps_entries_another_node_gained_since(cluster, capsys, tmp_path):
    record = str(tmp_path / "mappings.json")
    seed(cluster, {"wan": {"map": [GUI_PVE2]}})
    run_captured(capsys, cluster, {"entries": [PVE1], "record": record})
    state = json.loads(cluster["state"].read_text())
    state["mapping_pci"]["wan"]["map"].append("node=pve3,path=0000:05:00.0,id=8086:15f3")  # the GUI, later
    cluster["state"].write_text(json.dumps(state))
    failed, result = run_captured(capsys, cluster, {"state": "undone", "record": record})
    assert not failed, result.get("msg")
    assert sorted(mappings(cluster)["wan"]["map"]) == sorted([GUI_PVE2, "node=pve3,path=0000:05:00.0,id=8086:15f3"])


def test_a_mapping_a_vm_uses_is_never_deleted(cluster, capsys, tmp_path):
    record = str(tmp_path / "mappings.json")
    run_captured(capsys, cluster, {"entries": [PVE1], "record": record})
    state = json.loads(cluster["state"].read_text())
    state["vms"] = {"100": {"node": "pve2", "config": {"hostpci3": "mapping=wan"}},
                    "101": {"node": "pve1", "config": {"hostpci0": "mapping=lan"}}}
    cluster["state"].write_text(json.dumps(state))
    for state_ in ("undone", "absent"):
        failed, result = run_captured(capsys, cluster, {"state": state_, "record": record})
        assert not failed and not result["changed"] and result["used_by"] == ["VM 100 (hostpci3, on pve2)"]
        assert "mapping wan is kept: VM 100 (hostpci3, on pve2) uses it" in json.dumps(result["warnings"])
        assert "wan" in mappings(cluster) and json.loads(Path(record).read_text())["mappings"] == ["wan"]
    state["vms"]["100"]["config"] = {}
    cluster["state"].write_text(json.dumps(state))
    failed, result = run_captured(capsys, cluster, {"state": "undone", "record": record})
    assert not failed and result["action"] == "delete" and mappings(cluster) == {}
    assert not Path(record).exists()


def test_subsystem_id_takes_proxmoxs_own_name(cluster, capsys):
    entry = {"node": "pve1", "path": "0000:02:00.0", "id": "8086:15f3", "subsystem-id": "8086:0000", "iommugroup": 12}
    failed, result = run_captured(capsys, cluster, {"entries": [entry]})
    assert not failed and result["action"] == "create", result.get("msg")
    assert "subsystem-id=8086:0000" in mappings(cluster)["wan"]["map"][0]


@pytest.mark.parametrize(("entry", "message"), [
    (dict(PVE1, vlan=4), "entries[0]: unknown key vlan (known: node, path, id, subsystem_id, subsystem-id"),
    (dict(PVE1, **{"subsystem-id": "8086:0000"}), "entries[0]: subsystem_id and subsystem-id are one key"),
])
def test_entry_keys_are_checked_by_name(cluster, capsys, entry, message):
    failed, result = run_captured(capsys, cluster, {"entries": [entry]})
    assert failed and message in result["msg"], result["msg"]
    assert mappings(cluster) == {}


def test_a_mapping_a_snapshot_or_a_pending_change_holds_is_kept_too(cluster, capsys, tmp_path):
    """Rolling the VM back to its snapshot, or applying the pending change, would bring the line back."""
    record = str(tmp_path / "mappings.json")
    run_captured(capsys, cluster, {"entries": [PVE1], "record": record})
    state = json.loads(cluster["state"].read_text())
    state["vms"] = {"100": {"node": "pve1", "config": {}, "snapshots": {"before-upgrade": {"hostpci0": "mapping=wan"}}},
                    "101": {"node": "pve2", "config": {}, "pending": {"hostpci2": "mapping=wan,pcie=1"}}}
    cluster["state"].write_text(json.dumps(state))
    failed, result = run_captured(capsys, cluster, {"state": "undone", "record": record})
    assert not failed and not result["changed"], result.get("msg")
    assert result["used_by"] == ["VM 100 (snapshot before-upgrade: hostpci0, on pve1)",
                                 "VM 101 (pending hostpci2, on pve2)"]
    assert "wan" in mappings(cluster)
