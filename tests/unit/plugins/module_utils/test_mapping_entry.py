"""Mapping entries in Proxmox's format: built from pci_facts, parsed, validated, compared, checked."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci import entry_for
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox import _mapping_entry
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_entry import MappingError

IGC = {"address": "0000:02:00.0", "vendor": "8086", "device": "15f3", "subsystem_vendor": "8086",
       "subsystem_device": "0000", "iommu_group": "12", "mdev": False}


def test_entry_for_a_device_carries_what_proxmox_demands():
    assert entry_for(IGC) == {"path": "0000:02:00.0", "id": "8086:15f3", "subsystem-id": "8086:0000",
                              "iommugroup": 12}


def test_entry_for_a_device_without_group_or_subsystem_leaves_them_out():
    device = dict(IGC, iommu_group=None, subsystem_vendor=None)
    assert entry_for(device) == {"path": "0000:02:00.0", "id": "8086:15f3"}
    assert entry_for(dict(IGC, vendor=None)) is None


def test_an_uppercase_id_is_a_difference_because_proxmox_compares_it_as_a_string():
    upper = _mapping_entry.parse_entry("node=pve1,path=0000:02:00.0,id=8086:15F3")
    assert upper["id"] == "8086:15F3"
    assert _mapping_entry.validate("wan", ["node=pve1,path=0000:02:00.0,id=8086:15F3"], None)[0]["id"] == "8086:15f3"
    desired = _mapping_entry.validate("wan", [upper], None)
    assert not _mapping_entry.same_entries(["node=pve1,path=0000:02:00.0,id=8086:15F3"], desired)


def test_parsing_compares_by_meaning_not_by_string():
    gui = "node=pve1,path=0000:02:00.0,id=0x8086:15f3,subsystem-id=0x8086:0000,iommugroup=12"
    ours = "iommugroup=12,id=8086:15f3,node=pve1,subsystem-id=8086:0000,path=0000:02:00.0"
    assert _mapping_entry.parse_entry(gui) == _mapping_entry.parse_entry(ours)
    assert _mapping_entry.format_entry(_mapping_entry.parse_entry(ours)) == (
        "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12")
    desired = [_mapping_entry.parse_entry(ours), _mapping_entry.parse_entry("node=pve2,path=0000:03:00.0,id=8086:15f3")]
    assert _mapping_entry.same_entries(["node=pve2,path=0000:03:00.0,id=8086:15f3", gui], desired)
    assert not _mapping_entry.same_entries([gui], desired)


@pytest.mark.parametrize(("text", "message"), [
    ("node=pve1,path=0000:02:00.0", "id is required"),
    ("node=pve1,path=02:00.0,id=8086:15f3", "path '02:00.0' is not a PCI address"),
    ("node=pve1,path=0000:02:00.0,id=8086-15f3", "id '8086-15f3' is not vendor:device"),
    ("node=-pve,path=0000:02:00.0,id=8086:15f3", "node '-pve' is not a valid node name"),
    ("node=pve9,path=0000:02:00.0,id=8086:15f3", "node 'pve9' is not a member of this cluster (members: pve1, pve2)"),
    ("node=pve1,path=0000:02:00.0,id=8086:15f3,iommugroup=x", "iommugroup 'x' is not an integer"),
    ("node=pve1,path=0000:02:00.0,id=8086:15f3,vlan=5", "unknown key vlan"),
    ("node=pve1,node=pve2,path=0000:02:00.0,id=8086:15f3", "node given twice"),
])
def test_validate_refuses_what_proxmox_would_and_names_it(text, message):
    with pytest.raises(MappingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _mapping_entry.validate("wan", [text], ["pve1", "pve2"])


def test_validate_refuses_one_node_and_path_twice_and_a_bad_name():
    entry = {"node": "pve1", "path": "0000:02:00.0", "id": "8086:15f3"}
    with pytest.raises(MappingError, match=r"entries\[1\]: node pve1 path 0000:02:00.0 is already entries\[0\]"):
        _mapping_entry.validate("wan", [entry, dict(entry, id="8086:15F3")], None)
    for bad in ("1wan", "w", "wan port", ""):
        with pytest.raises(MappingError, match="is not a Proxmox mapping ID"):
            _mapping_entry.validate(bad, [entry], None)


def test_hardware_problems_follow_assert_valid():
    devices = {IGC["address"]: IGC}
    good = _mapping_entry.validate("wan", [dict(node="pve1", **entry_for(IGC))], None)[0]
    assert _mapping_entry.hardware_problems(good, devices, mdev=False) == []
    changed = dict(good, id="8086:125c")
    assert _mapping_entry.hardware_problems(changed, devices, False) == [
        "'id' does not match for device '0000:02:00.0' (hardware 8086:15f3, mapping 8086:125c)"]
    no_group = {k: v for k, v in good.items() if k != "iommugroup"}
    assert _mapping_entry.hardware_problems(no_group, devices, False) == [
        "missing expected property 'iommugroup' for device '0000:02:00.0' (the hardware has 12)"]
    assert _mapping_entry.hardware_problems(dict(good, path="0000:05:00.0"), devices, False) == [
        "pci device '0000:05:00.0' not found"]
    assert _mapping_entry.hardware_problems(good, devices, mdev=True) == [
        "'mdev' does not match for device '0000:02:00.0' (hardware 0, mapping 1)"]


def test_whole_device_path_is_checked_as_function_0_and_group_only_on_the_first_path():
    second = dict(IGC, address="0000:03:00.0", iommu_group="14")
    devices = {IGC["address"]: IGC, second["address"]: second}
    entry = {"node": "pve1", "path": "0000:02:00;0000:03:00.0", "id": "8086:15f3", "subsystem-id": "8086:0000",
             "iommugroup": 12}
    assert _mapping_entry.hardware_problems(entry, devices, False) == []
