"""The cluster's mappings from every node's plan, and the record that bounds a rollback."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils._mappings import (
    MappingsError,
    attachments,
    mapping_plan,
    record_after,
)

IGC = {"address": "0000:02:00.0", "mapping": "wan", "vm": 100,
       "proxmox_mapping": {"path": "0000:02:00.0", "id": "8086:15f3", "subsystem-id": "8086:0000", "iommugroup": 12}}
IGB = {"address": "0000:01:00.1", "mapping": "wan", "vm": 100,
       "proxmox_mapping": {"path": "0000:01:00.1", "id": "8086:1521", "iommugroup": 3}}


def test_one_name_across_nodes_is_one_mapping_with_an_entry_per_node():
    plan = mapping_plan({"b": {"node": "pve2", "devices": [IGB]},
                         "a": {"node": "pve1", "devices": [IGC, {"address": "0000:03:00.0", "mapping": None}]}})
    assert plan == [{"name": "wan", "hosts": ["a", "b"], "vms": [100], "entries": [
        {"node": "pve1", "path": "0000:02:00.0", "id": "8086:15f3", "subsystem_id": "8086:0000", "iommugroup": 12},
        {"node": "pve2", "path": "0000:01:00.1", "id": "8086:1521", "subsystem_id": None, "iommugroup": 3}]}]
    assert attachments(plan) == [{"vmid": 100, "mapping": "wan"}]


def test_a_node_without_a_proxmox_name_is_refused_by_name():
    with pytest.raises(MappingsError, match="pve9: the node's Proxmox name is unknown"):
        mapping_plan({"pve9": {"node": None, "devices": [IGC]}})


def test_the_record_keeps_only_what_was_created_and_unions_the_nodes():
    made = [{"action": "create", "item": {"name": "wan"}}, {"action": "update", "item": {"name": "lan"}}]
    attached = [{"added": True, "item": {"vmid": 100, "mapping": "wan"}},
                {"added": False, "changed": True, "item": {"vmid": 101, "mapping": "lan"}}]
    assert record_after([], made, attached) == {"mappings": ["wan"], "attached": [{"vmid": 100, "mapping": "wan"}]}
    older = [{"mappings": ["dmz"], "attached": []},
             {"mappings": ["dmz"], "attached": [{"vmid": 102, "mapping": "dmz"}]}]
    assert record_after(older, [], []) == {"mappings": ["dmz"], "attached": [{"vmid": 102, "mapping": "dmz"}]}
