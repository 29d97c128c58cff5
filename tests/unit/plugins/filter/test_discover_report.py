"""The report filters render pci_facts results of the fake profiles."""

from __future__ import annotations

import ast
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml

from ansible_collections.vfio.proxmox.plugins.filter.fleet_report import FilterModule as FleetReport
from ansible_collections.vfio.proxmox.plugins.filter.nic_table import FilterModule as NicTable
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._report import fleet_report, nic_table

ROOT = Path(__file__).resolve().parents[4]
FILTERS = ROOT / "plugins" / "filter"
SCHEMA = ROOT / "docs" / "docsite" / "fleet-report.schema.json"


def facts(node, **kwargs):
    return gather(run=node.run, which=node.which, **node.roots, **kwargs)["ansible_facts"]


def test_nic_table_rows_and_readiness(fake_node):
    lines = nic_table(facts(fake_node("guide-intel"))).splitlines()
    header = ["ADDRESS", "ID", "DRIVER", "GROUP", "GROUP", "PEERS", "INTERFACES", "MANAGEMENT", "NAME"]
    assert lines[0].split() == header
    eno1 = next(line for line in lines if line.startswith("0000:00:1f.6"))
    assert "8086:1a1c  e1000e  9" in eno1
    assert "eno1 > vmbr0 (up 1000 Mb/s) 192.0.2.10/24@vmbr0" in eno1
    assert "MGMT (vmbr0: default route (ipv4))" in eno1
    igc = next(line for line in lines if line.startswith("0000:02:00.0"))
    assert "MGMT" not in igc and "enp2s0 (up 2500 Mb/s)" in igc
    # Only network functions are rows: the GPU and bridges are not.
    assert not any(line.startswith(("0000:00:02.0", "0000:00:1c.0")) for line in lines)
    assert "iommu:               active (6 groups)" in lines
    assert "interrupt remapping: enabled" in lines
    assert "boot loader:         grub (/boot/grub/grub.cfg present)" in lines


def test_nic_table_shows_group_peers_and_iommu_off(fake_node):
    table = nic_table(facts(fake_node("chipset-group")))
    row = next(line for line in table.splitlines() if line.startswith("0000:03:00.0"))
    assert "0000:00:14.0, 0000:00:17.0, 0000:00:1c.0, 0000:02:00.0" in row
    assert "iommu:               NOT active (no IOMMU groups)" in nic_table(facts(fake_node("iommu-off"))).splitlines()


def test_nic_table_without_network_functions():
    assert nic_table({"vfio_pci_devices": [], "vfio_host": {}}).splitlines()[1] == "(no network functions found)"


def test_fleet_report_markdown_and_json(fake_node):
    hostvars = {
        "pve1": {"ansible_facts": facts(fake_node("guide-intel"))},
        "pve2": {"ansible_facts": facts(fake_node("amd-zfs-uefi"))},
        "unreached": {"ansible_facts": {}},
    }
    report = fleet_report(hostvars, ["pve2", "pve1", "unreached"], generated_at="2026-12-03T19:00:00+00:00")
    document = json.loads(report["json"])
    assert (document["format"], document["format_version"]) == ("vfio.proxmox.fleet_report", 1)
    assert document["generated_at"] == "2026-12-03T19:00:00+00:00"
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    data = document["hosts"]
    assert sorted(data) == ["pve1", "pve2"]
    assert [n["address"] for n in data["pve2"]["nics"]] == ["0000:05:00.0", "0000:06:00.0"]
    assert data["pve2"]["readiness"]["boot_loader"] == "systemd-boot (proxmox-boot-tool status: ESP in uefi mode)"
    md = report["markdown"]
    assert md.index("## pve1") < md.index("## pve2")
    assert "unreached" not in md
    assert "| 0000:02:00.0 | 8086:15f3 | igc | 12 |" in md
    assert "Generated 2026-12-03T19:00:00+00:00." in md


def test_fleet_report_is_made_now_in_utc_unless_told():
    stamp = json.loads(fleet_report({}, [])["json"])["generated_at"]
    made = datetime.fromisoformat(stamp)
    assert made.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - made) < timedelta(minutes=1)


def test_fleet_report_keeps_the_time_of_an_earlier_report_with_the_same_content(fake_node):
    """The discover playbook writes the report again on every run: the same content keeps its time (a second
    run changes nothing); other content, another format or text that is not a report gets a new one."""
    hostvars = {"pve1": {"ansible_facts": facts(fake_node("guide-intel"))}}
    first = fleet_report(hostvars, ["pve1"], generated_at="2026-12-01T10:00:00+00:00")
    again = fleet_report(hostvars, ["pve1"], previous=first["json"])
    assert again == first
    other = {"pve1": {"ansible_facts": facts(fake_node("amd-zfs-uefi"))}}
    version_2 = first["json"].replace('"format_version": 1', '"format_version": 2')
    cases = [(first["json"], other), (version_2, hostvars), ("not json", hostvars), ("[]", hostvars), ("", hostvars)]
    for earlier, hosts in cases:
        made = json.loads(fleet_report(hosts, ["pve1"], previous=earlier)["json"])["generated_at"]
        assert made != "2026-12-01T10:00:00+00:00"


def test_report_filters_are_one_per_file():
    assert NicTable().filters() == {"nic_table": nic_table}
    assert FleetReport().filters() == {"fleet_report": fleet_report}


@pytest.mark.parametrize("path", sorted(FILTERS.glob("*.py")), ids=lambda p: p.stem)
def test_each_filter_file_holds_the_one_filter_its_documentation_names(path):
    """galaxy-importer lists every file in plugins/filter as a filter, and a documentation file beside it as a
    second one: one filter per file, named like it, documented inside it.

    Read with ast, not imported: importing ansible.errors (as some filters do) into this process makes
    AnsibleModule in later tests report warnings to the controller's display instead of in its result."""
    tree = ast.parse(path.read_text())
    strings = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
               and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    filters = [node for cls in tree.body if isinstance(cls, ast.ClassDef) and cls.name == "FilterModule"
               for node in ast.walk(cls) if isinstance(node, ast.Return)]
    assert len(filters) == 1 and [ast.literal_eval(k) for k in filters[0].value.keys] == [path.stem]
    assert yaml.safe_load(strings["DOCUMENTATION"])["name"] == path.stem
    assert yaml.safe_load(strings["EXAMPLES"]) and yaml.safe_load(strings["RETURN"])["_value"]["description"]
    # __pycache__ (written by any test that imports a filter - with xdist, maybe while this one runs) never reaches
    # the tarball: ansible-galaxy build leaves it out.
    assert [p.name for p in FILTERS.iterdir() if p.suffix != ".py" and p.name != "__pycache__"] == []
