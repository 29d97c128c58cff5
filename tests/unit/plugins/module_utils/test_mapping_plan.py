"""The cluster's mappings from every node's plan, and the record that bounds a rollback."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import (
    MappingsError,
    attach_problems,
    attachments,
    mapping_plan,
    noted_attachment,
    noted_undo,
    noted_write,
    parse_record,
    union,
)

IGC = {"address": "0000:02:00.0", "mapping": "wan", "vm": 100,
       "proxmox_mapping": {"path": "0000:02:00.0", "id": "8086:15f3", "subsystem-id": "8086:0000", "iommugroup": 12}}
IGB = {"address": "0000:01:00.1", "mapping": "wan", "vm": 100,
       "proxmox_mapping": {"path": "0000:01:00.1", "id": "8086:1521", "iommugroup": 3}}


def test_one_name_across_nodes_is_one_mapping_with_an_entry_per_node():
    plan = mapping_plan({"b": {"node": "pve2", "devices": [IGB]},
                         "a": {"node": "pve1", "devices": [IGC, {"address": "0000:03:00.0", "mapping": None}]}})
    entries = [
        {"node": "pve1", "path": "0000:02:00.0", "id": "8086:15f3", "subsystem_id": "8086:0000", "iommugroup": 12},
        {"node": "pve2", "path": "0000:01:00.1", "id": "8086:1521", "subsystem_id": None, "iommugroup": 3}]
    assert plan == [{"name": "wan", "hosts": ["a", "b"], "vms": [100], "nodes": ["pve1", "pve2"], "entries": entries}]
    assert attachments(plan) == [{"vmid": 100, "mapping": "wan", "entries": entries, "nodes": ["pve1", "pve2"]}]


def test_every_node_of_the_play_decides_its_entries_even_without_a_device_for_the_mapping():
    plan = mapping_plan({"a": {"node": "pve1", "devices": [IGC]}, "c": {"node": "pve3", "devices": []}})
    assert plan[0]["nodes"] == ["pve1", "pve3"]


def test_attach_problems_name_failures_and_vms_no_node_of_the_play_holds():
    item = {"vmid": 100, "mapping": "wan"}
    other = {"vmid": 101, "mapping": "wan"}
    pve1 = {"results": [{"item": item, "changed": True}, {"item": other, "elsewhere": True, "node": "pve3"}]}
    pve2 = {"results": [{"item": item, "elsewhere": True, "node": "pve1"},
                        {"item": other, "elsewhere": True, "node": "pve3"}]}
    assert attach_problems([pve1, pve2]) == [
        "VM 101 is on node pve3, which is not in this play: it was not given mapping wan (run the playbook with "
        "that node too)"]
    pve1["results"][0] = {"item": item, "failed": True, "msg": "vm_hostpci 100/wan: refused"}
    assert attach_problems([pve1, pve2])[0] == "vm_hostpci 100/wan: refused"
    assert attach_problems([{"results": []}, {}]) == []


def test_a_node_without_a_proxmox_name_is_refused_by_name():
    with pytest.raises(MappingsError, match="pve9: the node's Proxmox name is unknown"):
        mapping_plan({"pve9": {"node": None, "devices": [IGC]}})


def test_the_record_notes_what_was_created_and_the_former_state_of_what_was_changed():
    record = parse_record(None, "mappings.json")
    assert record == {"mappings": [], "decided": {}, "changed": {}, "attached": []}
    record = noted_write(record, "wan", "create", None, ["pve1"])
    gui = {"map": ["node=pve3,path=0000:05:00.0,id=8086:15f3"], "description": None, "mdev": 0,
           "live-migration-capable": 1}
    record = noted_write(record, "lan", "update", gui, ["pve1"])
    # A second change keeps the first former state: that is what a rollback puts back.
    record = noted_write(record, "lan", "update", {"map": ["ours"]}, ["pve2"])
    record = noted_write(record, "wan", "update", {"map": ["ours"]}, ["pve2"])
    assert record == {"mappings": ["wan"], "attached": [], "decided": {"wan": ["pve1", "pve2"]},
                      "changed": {"lan": {"nodes": ["pve1", "pve2"], "before": gui,
                                          # each node's entries just before the first write that decided it
                                          "node_entries": {"pve1": [], "pve2": []}}}}
    record = noted_attachment(record, 100, "wan", True)
    assert record["attached"] == [{"vmid": 100, "mapping": "wan"}]
    assert noted_attachment(record, 100, "wan", False)["attached"] == []
    assert noted_undo(record, "lan")["changed"] == {}


def test_the_nodes_records_are_united_and_an_old_record_still_reads():
    old = parse_record('{"mappings": ["dmz"], "attached": [{"vmid": 102, "mapping": "dmz"}]}', "pve1")
    newer = {"mappings": ["wan"], "attached": [], "changed": {"lan": {"nodes": ["pve2"], "before": {"map": ["x"]}}}}
    assert union([old, newer, old]) == {
        "mappings": ["dmz", "wan"], "attached": [{"vmid": 102, "mapping": "dmz"}], "decided": {},
        "changed": {"lan": {"nodes": ["pve2"], "before": {"map": ["x"]}}}}


def test_a_record_that_is_not_json_is_refused_by_path():
    with pytest.raises(MappingsError, match="/etc/vfio-proxmox/mappings.json is not JSON"):
        parse_record("{", "/etc/vfio-proxmox/mappings.json")
