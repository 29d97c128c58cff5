"""vm_hostpci against the pvesh/qm test double (tests/sim/pvesh_double.py) on a fake node."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import vm_hostpci
from tests.unit.module_args import patch_module_args

WAN = "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12"


@pytest.fixture
def node(tmp_path, fake_node, monkeypatch, proxmox_commands):
    tree = fake_node("guide-intel")
    state = tmp_path / "pve-state.json"
    state.write_text(json.dumps({
        "nodes": ["pve1"], "mapping_pci": {"wan": {"map": [WAN]}},
        "vms": {"100": {"node": "pve1", "config": {"machine": "q35", "hostpci0": "0000:01:00.0,pcie=1"}},
                "101": {"node": "pve1", "config": {"name": "old-pc"}}}}))
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(state))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    monkeypatch.setenv("PVESH_DOUBLE_SYSFS", tree.roots["sysfs_root"])
    monkeypatch.setattr(socket, "gethostname", lambda: "pve1")  # the module's "this node"
    return {"state": state, "tree": tree, **proxmox_commands}


def run(capsys, node, args: dict, check: bool = False) -> tuple[bool, dict]:
    args = dict({"vmid": 100, "mapping": "wan", "pvesh": node["pvesh"], "qm": node["qm"],
                 "_ansible_check_mode": check, "_ansible_diff": True}, **args)
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        vm_hostpci.main()
    return exited.value.code != 0, json.loads(capsys.readouterr().out)


def config(node, vmid="100") -> dict:
    return json.loads(node["state"].read_text())["vms"][vmid]["config"]


def test_takes_the_first_free_slot_once_and_leaves_the_raw_line_alone(capsys, node):
    failed, result = run(capsys, node, {"pcie": True}, check=True)
    assert not failed and result["changed"] and result["slot"] == "hostpci1"
    assert "hostpci1" not in config(node)
    failed, result = run(capsys, node, {"pcie": True})
    assert not failed and result["applies"] == "at the next start of the VM", result.get("msg")
    assert config(node) == {"machine": "q35", "hostpci0": "0000:01:00.0,pcie=1", "hostpci1": "mapping=wan,pcie=1"}
    assert "-device vfio-pci,host=0000:02:00.0,id=hostpci1" in result["showcmd"]
    failed, result = run(capsys, node, {"pcie": True})
    assert not failed and not result["changed"] and result["slot"] == "hostpci1"


def test_options_equal_to_proxmox_defaults_are_no_change(capsys, node):
    run(capsys, node, {})
    failed, result = run(capsys, node, {"rombar": True})
    assert not failed and not result["changed"]


@pytest.mark.parametrize(("args", "message"), [
    ({"vmid": 101, "pcie": True}, "pcie: true needs the q35 machine type; VM 101 has machine 'default i440fx'"),
    ({"slot": 0}, "slot: hostpci0 of VM 100 holds '0000:01:00.0,pcie=1', not this mapping; it is never touched"),
    ({"slot": 16}, "slot: 16 is not between 0 and 15"),
    ({"vmid": 999}, "vmid: no VM 999 in this cluster"),
    ({"vmid": 999, "node": "pve1"}, "vmid: VM 999 on node pve1: Configuration file 'nodes/pve1/qemu-server/999.conf' "
                                    "does not exist"),
    ({"mapping": "1wan"}, "mapping: '1wan' is not a Proxmox mapping ID"),
])
def test_refusals_write_nothing(capsys, node, args, message):
    before = node["state"].read_text()
    failed, result = run(capsys, node, args)
    assert failed and message in result["msg"], result["msg"]
    assert node["state"].read_text() == before


def test_a_mapping_whose_hardware_changed_is_taken_out_again(capsys, node):
    Path(node["tree"].roots["sysfs_root"], "bus", "pci", "devices", "0000:02:00.0", "device").write_text("0x125c\n")
    failed, result = run(capsys, node, {"pcie": True})
    assert failed and "PCI device mapping invalid (hardware probably changed): 'id' does not match for 'wan' " \
                      "(8086:125c != 8086:15f3) (the line was taken out again)" in result["msg"]
    assert "hostpci1" not in config(node)


def test_absent_removes_only_the_mappings_lines(capsys, node):
    run(capsys, node, {"pcie": True})
    failed, result = run(capsys, node, {"state": "absent"})
    assert not failed and result["removed"] == ["hostpci1"]
    assert config(node) == {"machine": "q35", "hostpci0": "0000:01:00.0,pcie=1"}
    assert not run(capsys, node, {"state": "absent"})[1]["changed"]


def test_a_vm_on_another_node_is_configured_there_and_not_asked_with_qm(capsys, node):
    state = json.loads(node["state"].read_text())
    state["nodes"].append("pve2")
    state["vms"]["200"] = {"node": "pve2", "config": {"machine": "pc-q35-9.2+pve1"}}
    state["mapping_pci"]["wan"]["map"].append("node=pve2,path=0000:01:00.1,id=8086:1521")
    node["state"].write_text(json.dumps(state))
    failed, result = run(capsys, node, {"vmid": 200, "pcie": True})
    assert not failed and result["node"] == "pve2" and result["slot"] == "hostpci0"
    assert result["showcmd"] == "not checked: VM 200 is on node pve2, this task runs on pve1"
    assert config(node, "200")["hostpci0"] == "mapping=wan,pcie=1"


# Issue 20: what would keep the VM from starting is refused before the write.

def with_vm(node, config: dict, vmid: str = "102", where: str = "pve1", **state_changes) -> None:
    state = json.loads(node["state"].read_text())
    state["vms"][vmid] = {"node": where, "config": config}
    state.update(state_changes)
    node["state"].write_text(json.dumps(state))


@pytest.mark.parametrize("raw", ["0000:02:00.0", "02:00.0", "02:00", "0000:02:00,pcie=1", "0000:05:00.0;02:00.0"])
def test_a_device_the_vm_already_has_raw_is_refused_naming_the_line(capsys, node, raw):
    with_vm(node, {"hostpci4": raw})
    before = node["state"].read_text()
    failed, result = run(capsys, node, {"vmid": 102})
    assert failed and "VM 102 already has" in result["msg"] and "in hostpci4: %r" % raw in result["msg"], result["msg"]
    assert node["state"].read_text() == before


def test_a_device_the_vm_has_through_another_mapping_is_refused(capsys, node):
    state = json.loads(node["state"].read_text())
    state["mapping_pci"]["port"] = {"map": ["node=pve1,path=0000:02:00,id=8086:15f3"]}
    node["state"].write_text(json.dumps(state))
    with_vm(node, {"hostpci0": "mapping=port"})
    failed, result = run(capsys, node, {"vmid": 102})
    assert failed and "in hostpci0: 'mapping=port'" in result["msg"], result["msg"]


def test_another_device_is_no_clash(capsys, node):
    with_vm(node, {"hostpci0": "00:1f.6"})
    failed, result = run(capsys, node, {"vmid": 102})
    assert not failed and result["slot"] == "hostpci1", result.get("msg")


@pytest.mark.parametrize(("one", "other", "same"), [
    ("0000:02:00.0", "02:00.0", True), ("0000:02:00", "02:00.1", True), ("02:00.0", "0000:02:00.1", False),
    ("0000:02:00.0", "0001:02:00.0", False), ("02:00", "02:01", False), ("0000:02:00.0", "0000:02:00.0 ", True),
])
def test_overlaps_follows_proxmox_address_expansion(one, other, same):
    from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._vm_hostpci import overlaps
    assert overlaps(one, other) is same
    reverse = {"one": other, "other": one}
    assert overlaps(**reverse) is same


def test_a_vm_on_a_node_the_mapping_does_not_cover_is_refused(capsys, node):
    with_vm(node, {}, where="pve2", nodes=["pve1", "pve2"])
    failed, result = run(capsys, node, {"vmid": 102})
    assert failed and "VM 102 is on node pve2, and mapping wan has no entry for it (entries for: pve1)" \
        in result["msg"], result["msg"]
    failed, result = run(capsys, node, {"vmid": 102, "mapping": "nothere"})
    assert failed and "there is no mapping nothere in this cluster" in result["msg"]


def test_the_entries_this_run_writes_decide_in_check_mode(capsys, node):
    with_vm(node, {}, where="pve2", nodes=["pve1", "pve2"])
    entries = [{"node": "pve2", "path": "0000:01:00.1", "id": "8086:1521"}]
    failed, result = run(capsys, node, {"vmid": 102, "entries": entries}, check=True)
    assert not failed and result["changed"] and result["slot"] == "hostpci0", result.get("msg")


@pytest.mark.parametrize("machine", ["viommu=intel,type=q35", "type=pc-q35-9.2+pve1,viommu=virtio", "q35"])
def test_machine_is_read_as_proxmox_parses_it(capsys, node, machine):
    with_vm(node, {"machine": machine})
    failed, result = run(capsys, node, {"vmid": 102, "pcie": True})
    assert not failed, result.get("msg")


@pytest.mark.parametrize("line", ["mapping=wan,pcie=on", "mapping=wan,pcie=yes,rombar=ON", "pcie=true,,mapping=wan,"])
def test_booleans_compare_as_proxmox_parses_them(capsys, node, line):
    with_vm(node, {"machine": "q35", "hostpci0": line})
    failed, result = run(capsys, node, {"vmid": 102, "pcie": True})
    assert not failed and not result["changed"], result


def test_removing_from_a_destroyed_vm_has_nothing_to_do(capsys, node):
    failed, result = run(capsys, node, {"vmid": 999, "state": "absent"})
    assert not failed and not result["changed"] and result["gone"]


def test_only_here_leaves_a_vm_on_another_node_alone(capsys, node):
    with_vm(node, {}, where="pve2", nodes=["pve1", "pve2"])
    before = node["state"].read_text()
    failed, result = run(capsys, node, {"vmid": 102, "only_here": True})
    assert not failed and not result["changed"] and result["elsewhere"] and result["node"] == "pve2"
    assert node["state"].read_text() == before


def test_an_unchanged_line_is_checked_by_proxmox_on_every_run(capsys, node):
    failed, result = run(capsys, node, {"vmid": 100})
    assert not failed and result["changed"], result.get("msg")
    device = node["tree"].roots["sysfs_root"] + "/bus/pci/devices/0000:02:00.0/device"
    Path(device).write_text("0x125c\n")  # the card was swapped
    failed, result = run(capsys, node, {"vmid": 100})
    assert failed and "qm showcmd 100 refuses the VM: PCI device mapping invalid" in result["msg"], result["msg"]
    assert "hostpci1" in config(node), "a line that was there is not taken out"


def test_the_record_notes_an_added_line_at_once(capsys, node, tmp_path):
    record = tmp_path / "mappings.json"
    failed, result = run(capsys, node, {"vmid": 100, "record": str(record)})
    assert not failed and result["added"]
    assert json.loads(record.read_text())["attached"] == [{"vmid": 100, "mapping": "wan"}]
    failed, result = run(capsys, node, {"vmid": 100, "record": str(record), "state": "absent"})
    assert not failed and not record.exists()
