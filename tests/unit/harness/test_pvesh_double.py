"""The pvesh test double enforces the Proxmox rules it cites (tests/sim/pvesh_double.py)."""

from __future__ import annotations

import json
import os
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
    assert pvesh("set", "/cluster/mapping/pci/wan", "--map", MAP, "--description", "x",
                 "--digest", mapping["digest"])[0] == 0
    rc, _out, err = pvesh("set", "/cluster/mapping/pci/wan", "--map", MAP, "--description", "y",
                          "--digest", mapping["digest"])
    assert rc == 255 and "detected modified configuration - file changed by other user? Try again." in err
    assert pvesh("delete", "/cluster/mapping/pci/wan")[0] == 0
    assert pvesh("get", "/cluster/mapping/pci/wan")[2] == "mapping 'wan' not found"


@pytest.mark.parametrize(("argv", "message"), [
    (["create", "/cluster/mapping/pci", "--id", "wan"], "map: property is missing and it is not optional"),
    (["create", "/cluster/mapping/pci", "--id", "1wan", "--map", MAP], "invalid configuration ID '1wan'"),
    (["create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP + ",vlan=4"],
     "invalid key in comma-separated list property: vlan"),  # JSONSchema.pm parse_property_string
    (["create", "/cluster/mapping/pci", "--id", "wan", "--map", "node=pve1,path=0000:02:00.0"],
     "id: property is missing and it is not optional"),
    (["create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP.replace("0000:02", "0000:0X")],
     "path: value does not match the regex pattern"),
    (["set", "/cluster/mapping/pci/lan", "--map", MAP], "pci ID 'lan' does not exist"),
])
def test_refusals_quote_proxmox(pvesh, argv, message):
    rc, _out, err = pvesh(*argv)
    assert rc == 255 and message in err, err


def test_required_map_cannot_be_deleted_and_not_set_and_deleted_at_once(pvesh):
    pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP, "--description", "d")
    refused = pvesh("set", "/cluster/mapping/pci/wan", "--map", MAP, "--delete", "map")[2]
    assert "unable to delete required option 'map'" in refused
    assert "cannot set and delete property 'description' at the same time!" in pvesh(
        "set", "/cluster/mapping/pci/wan", "--map", MAP, "--delete", "description", "--description", "e")[2]
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


# Rules checked in Proxmox's sources for issue 20 (each cited in the double where it is enforced).

def test_an_update_needs_map(pvesh):
    """pve-manager Cluster/Mapping/PCI.pm update: check_config in create mode, so map is required."""
    pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP)
    rc, _out, err = pvesh("set", "/cluster/mapping/pci/wan", "--description", "x")
    assert rc == 255 and "missing value for required option 'map'" in err


@pytest.mark.parametrize(("entry", "error"), [
    (MAP + ",", None), ("node=pve1,,path=0000:02:00.0,id=8086:15f3", None),  # empty fields are skipped
    ("node=pve1,path=0000:02:00.0,id=8086:15f3,iommugroup=+12", None),  # an integer to JSONSchema.pm
    (MAP + ",description=", "missing key in comma-separated list property"),
    (MAP + ",description=a\nb", "missing key in comma-separated list property"),  # `.` stops at a line break
    ("node=pve1,path=0000:02:00.0,id=8086:15f3\n", None),  # `$` matches before a final line break
    (MAP + ",12", "value without key, but schema does not define a default key"),
    (MAP + ",description=" + "x" * 4097, "description: value does not match"),
])
def test_map_entries_parse_as_parse_property_string_does(pvesh, entry, error):
    rc, _out, err = pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", entry)
    assert (rc == 0) if error is None else (rc == 255 and error in err), err


def test_a_line_feed_in_a_description_is_refused(pvesh):
    """pve-common SectionConfig.pm format_config_line: a value with a line feed is not written."""
    rc, _out, err = pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP, "--description", "a\nb")
    assert rc == 255 and "contains a line feed" in err


def test_text_above_latin1_reads_back_double_encoded_and_latin1_survives(pvesh):
    """pve-cluster IPCC.xs hands the parser raw bytes: UTF-8 written, bytes read as characters."""
    pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP, "--description", "Caf\u00e9 \u2192 fw")
    assert pvesh("get", "/cluster/mapping/pci/wan")[1]["description"] == "Caf\u00c3\u00a9 \u00e2\u0086\u0092 fw"
    pvesh("create", "/cluster/mapping/pci", "--id", "lan", "--map", MAP, "--description", "Caf\u00e9")
    assert pvesh("get", "/cluster/mapping/pci/lan")[1]["description"] == "Caf\u00e9"


def test_check_node_skips_an_entry_it_cannot_parse_and_localhost_is_a_name(pvesh, tmp_path):
    state = {"nodes": ["pve1"], "mapping_pci": {"wan": {"map": [MAP, "node=pve1,path=bad,id=8086:15f3"]}}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    rc, listed, err = pvesh("get", "/cluster/mapping/pci", "--check-node", "pve1")
    assert rc == 0 and listed[0]["checks"] == [] and "unable to parse PCI mapping entry" in err
    rc, listed, _err = pvesh("get", "/cluster/mapping/pci", "--check-node", "localhost")
    assert listed[0]["checks"] == [{"severity": "warning", "message": "No mapping for node localhost."}]


def test_a_device_without_an_irq_file_is_not_found(pvesh, tmp_path):
    """pve-common SysFSTools.pm pci_device_info: no numeric irq, no device."""
    pvesh("create", "/cluster/mapping/pci", "--id", "wan", "--map", MAP)
    sysfs = Path(os.environ["PVESH_DOUBLE_SYSFS"])
    (sysfs / "bus" / "pci" / "devices" / "0000:02:00.0" / "irq").unlink()
    listed = pvesh("get", "/cluster/mapping/pci", "--check-node", "pve1")[1]
    assert listed[0]["checks"][0]["message"].startswith("Invalid configuration: pci device '0000:02:00.0' not found")


def vm_state(tmp_path, config: dict, mapping_pci: dict | None = None) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"nodes": ["pve1"], "mapping_pci": mapping_pci or {"wan": {
        "map": [MAP]}}, "vms": {"100": {"node": "pve1", "config": config}}}))


@pytest.mark.parametrize(("config", "error"), [
    ({"hostpci0": "mapping=wan", "hostpci1": "02:00.0"}, "device '0000:02:00.0' assigned more than once"),
    ({"hostpci0": "02:00", "hostpci1": "0000:02:00.0"}, "device '0000:02:00.0' assigned more than once"),
    ({"hostpci0": "mapping=wan,pcie=on", "machine": "viommu=intel,type=q35"}, None),
    ({"hostpci0": "mapping=wan,pcie=on", "machine": "viommu=intel"}, "q35 machine model is not enabled"),
    ({"hostpci0": "mapping=wan,pcie=maybe"}, "pcie: type check ('boolean') failed - got 'maybe'"),
    ({"hostpci0": "mapping=wan,,rombar=0,"}, None),
    ({"hostpci0": "mapping=wan,vendor-id=8086"}, "vendor-id: value does not match the regex pattern"),
    ({"hostpci0": "mapping=wan,driver=nvidia"}, "driver: value does not match the regex pattern"),
    ({"hostpci0": "mapping=wan,romfile=a;b"}, "romfile: value does not match the regex pattern"),
    ({"hostpci0": "0000:07:00.0"}, "no PCI device found for '0000:07:00.0'"),
])
def test_qm_showcmd_parses_and_chooses_devices_as_qemu_server_does(pvesh, tmp_path, config, error):
    vm_state(tmp_path, config)
    done = subprocess.run([sys.executable, str(DOUBLE), "qm", "showcmd", "100"], capture_output=True, text=True,
                          check=False)
    assert (done.returncode == 0) if error is None else (done.returncode == 255 and error in done.stderr), done.stderr


def test_a_pool_gives_the_first_free_device(pvesh, tmp_path):
    pool = {"wan": {"map": ["node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12",
                            "node=pve1,path=0000:00:1f.6,id=8086:1a1c,subsystem-id=8086:0000,iommugroup=9"]}}
    vm_state(tmp_path, {"hostpci0": "02:00.0", "hostpci1": "mapping=wan"}, pool)
    done = subprocess.run([sys.executable, str(DOUBLE), "qm", "showcmd", "100"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "host=0000:00:1f.6,id=hostpci1" in done.stdout, done.stderr


def test_pending_and_snapshots_read_as_qemu_server_returns_them(pvesh, tmp_path):
    """qemu-server API2/Qemu.pm vm_pending (key, value, pending) and snapshot_list (names and `current`)."""
    (tmp_path / "state.json").write_text(json.dumps({"nodes": ["pve1"], "mapping_pci": {}, "vms": {"100": {
        "node": "pve1", "config": {"name": "fw"}, "pending": {"hostpci0": "mapping=wan"},
        "snapshots": {"s1": {"hostpci1": "mapping=lan"}}}}}))
    assert pvesh("get", "/nodes/pve1/qemu/100/pending")[1] == [
        {"key": "hostpci0", "pending": "mapping=wan"}, {"key": "name", "value": "fw"}]
    assert pvesh("get", "/nodes/pve1/qemu/100/snapshot")[1] == [{"name": "s1"}, {"name": "current"}]
    assert pvesh("get", "/nodes/pve1/qemu/100/snapshot/s1/config")[1] == {"hostpci1": "mapping=lan"}
