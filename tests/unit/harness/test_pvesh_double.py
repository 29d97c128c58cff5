"""The pvesh test double enforces the Proxmox rules it cites (tests/sim/pvesh_double.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DOUBLE = Path(__file__).resolve().parents[2] / "sim" / "pvesh_double.py"
MAP = "node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12"


@pytest.fixture
def pvesh(tmp_path, fake_node, monkeypatch):
    node = fake_node("guide-intel")
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(tmp_path / "state.json"))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    monkeypatch.setenv("PVESH_DOUBLE_SYSFS", node.roots["sysfs_root"])

    def call(*argv: str) -> tuple[int, object, str]:
        done = subprocess.run([sys.executable, str(DOUBLE), *argv], capture_output=True, text=True, check=False)
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr.strip()
    return call


def test_create_get_update_with_digest_and_delete(pvesh):
    assert pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP)[0] == 0
    rc, mapping, _err = pvesh("get", "/cluster/mapping/pci/wan")
    assert mapping["map"] == [MAP] and mapping["digest"]
    assert pvesh("set", "/cluster/mapping/pci/wan", "--description", "x", "--digest", mapping["digest"])[0] == 0
    rc, _out, err = pvesh("set", "/cluster/mapping/pci/wan", "--description", "y", "--digest", mapping["digest"])
    assert rc == 255 and "detected modified configuration - file changed by other user? Try again." in err
    assert pvesh("delete", "/cluster/mapping/pci/wan")[0] == 0
    assert pvesh("get", "/cluster/mapping/pci/wan")[2] == "mapping 'wan' not found"


@pytest.mark.parametrize(("argv", "message"), [
    (["create", "/cluster/mapping/pci", "--id", "wan"], "map: property is missing and it is not optional"),
    (["create", "/cluster/mapping/pci", "--id", "1wan", "--map", MAP], "invalid configuration ID '1wan'"),
    (["create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP + ",vlan=4"],
     "property 'vlan' is not defined in the format"),
    (["create", "/cluster/mapping/pci", "--id", "wan", "--map", "node=pve1,path=0000:02:00.0"],
     "id: property is missing and it is not optional"),
    (["create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP.replace("0000:02", "0000:0X")],
     "path: value does not match the regex pattern"),
    (["set", "/cluster/mapping/pci/lan", "--description", "x"], "pci ID 'lan' does not exist"),
])
def test_refusals_quote_proxmox(pvesh, argv, message):
    rc, _out, err = pvesh(*argv)
    assert rc == 255 and message in err, err


def test_required_map_cannot_be_deleted_and_not_set_and_deleted_at_once(pvesh):
    pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP, "--description", "d")
    assert "unable to delete required option 'map'" in pvesh("set", "/cluster/mapping/pci/wan", "--delete", "map")[2]
    assert "cannot set and delete property 'description' at the same time!" in pvesh(
        "set", "/cluster/mapping/pci/wan", "--delete", "description", "--description", "e")[2]
    assert pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP)[2].endswith(
        "pci ID 'wan' already defined")


def test_check_node_runs_assert_valid_and_warns_about_a_node_without_entries(pvesh):
    pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP)
    pvesh("create", "/cluster/mapping/pci", "--id", "bad", "--map", MAP.replace("15f3", "15F3"))
    pvesh("create", "/cluster/mapping/pci", "--id", "elsewhere", "--map", MAP.replace("pve1", "pve2"))
    checks = {m["id"]: m["checks"] for m in pvesh("get", "/cluster/mapping/pci", "--check-node", "pve1")[1]}
    assert checks["wan"] == []
    mismatch = "Invalid configuration: 'id' does not match for 'bad' (8086:15f3 != 8086:15F3)\n"
    assert checks["bad"] == [{"severity": "error", "message": mismatch}]
    assert checks["elsewhere"] == [{"severity": "warning", "message": "No mapping for node pve1."}]


def test_hardware_pci_hides_bridges_by_default_like_proxmox(pvesh):
    every = pvesh("get", "/nodes/pve1/hardware/pci", "--pci-class-blacklist", "")[1]
    default = pvesh("get", "/nodes/pve1/hardware/pci")[1]
    assert any(d["class"].startswith("0x06") for d in every)
    assert not any(d["class"].startswith(("0x05", "0x06", "0x0b")) for d in default)
    igc = next(d for d in every if d["id"] == "0000:02:00.0")
    assert igc["vendor"] == "0x8086" and igc["device"] == "0x15f3" and igc["iommugroup"] == 12
