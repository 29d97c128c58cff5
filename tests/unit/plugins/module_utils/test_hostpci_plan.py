"""The hostpci plan: which line, which value, what is never touched."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._vm_hostpci import Refused, is_q35, plan, same

PARAMS = {"vmid": 100, "mapping": "wan", "state": "present", "slot": None, "pcie": False, "rombar": None}


def test_machine_types_proxmox_counts_as_q35():
    assert is_q35({"machine": "q35"}) and is_q35({"machine": "pc-q35-9.2+pve1,viommu=intel"})
    assert is_q35({"machine": "type=pc-q35-8.1"})
    assert not is_q35({}) and not is_q35({"machine": "pc-i440fx-9.0"})


def test_same_fills_in_proxmox_defaults():
    assert same("mapping=wan,rombar=1,pcie=0", "mapping=wan")
    assert not same("mapping=wan,pcie=1", "mapping=wan")


def test_every_slot_taken_is_refused_and_a_second_slot_is_not_made():
    full = {"hostpci%d" % n: "0000:%02x:00.0" % n for n in range(16)}
    with pytest.raises(Refused, match="no free hostpci slot"):
        plan(full, PARAMS)
    with pytest.raises(Refused, match=r"already has mapping wan in hostpci3; slot 5 asks for hostpci5"):
        plan({"hostpci3": "mapping=wan"}, dict(PARAMS, slot=5))
    assert plan({"hostpci3": "mapping=wan,pcie=0"}, PARAMS) == (None, "mapping=wan", [])
    assert plan({"hostpci3": "mapping=wan", "hostpci7": "mapping=wan"}, dict(PARAMS, state="absent")) == (
        None, None, ["hostpci3", "hostpci7"])
