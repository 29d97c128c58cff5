"""Helpers the review 19 tests share: facts of a fake node, the role's inputs, files as pci_facts sees them."""

from __future__ import annotations

import hashlib
import json

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import STATE_RECORD


def facts(fake_node, profile="sriov-x710", mutate=None):
    node = fake_node(profile, mutate=mutate)
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def inputs(**given) -> dict:
    return dict({"state": "present", "devices": [], "sriov": []}, **given)


def on_node(path: str, content: str, mode: str = "0644") -> dict:
    return {"exists": True, "type": "file", "mode": mode, "uid": 0, "gid": 0, "content": content,
            "checksum": hashlib.sha1(content.encode()).hexdigest()}


def state_json(**record) -> dict:
    return on_node(STATE_RECORD, json.dumps(dict({"_comment": "Ansible managed - vfio.proxmox: record"}, **record)))


_FACTS: dict[str, dict] = {}


def cached_facts(fake_node, profile="sriov-x710") -> dict:
    """facts() of a profile, gathered once per test session (Hypothesis runs a test many times; the planner
    does not change the facts it is given)."""
    if profile not in _FACTS:
        _FACTS[profile] = facts(fake_node, profile)
    return _FACTS[profile]


# The sriov-x710 profile: a PF with two VFs, and a running VM holding one of them.
PF = "0000:04:00.0"
VF0, VF1 = "0000:04:02.0", "0000:04:02.1"
VM = "4242 (/usr/bin/kvm -id 101)"
SECTION = [{"address": PF, "id": "8086:1572", "vfs": 2, "vf_driver": "vfio-pci"}]
CONF = "# vfio.proxmox:\npf 0000:04:00.0 8086:1572 2 vfio-pci\n"


def device(found: dict, address: str) -> dict:
    return next(d for d in found["vfio_pci_devices"] if d["address"] == address)


def vfs_in_a_running_vm(fake_node) -> dict:
    """Both VFs on vfio-pci; VM 101 is running with VF 1 (IOMMU group 22)."""
    found = facts(fake_node)
    for address in (VF0, VF1):
        device(found, address).update(driver="vfio-pci", netdevs=[])
    found["vfio_host"]["vfio_users"] = {"22": [VM]}
    return found
