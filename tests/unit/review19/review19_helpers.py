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
