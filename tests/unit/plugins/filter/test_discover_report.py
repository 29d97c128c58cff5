"""The report filters render pci_facts results of the fake profiles."""

from __future__ import annotations

import json

from ansible_collections.vfio.proxmox.plugins.filter.discover_report import FilterModule, fleet_report, nic_table
from ansible_collections.vfio.proxmox.plugins.module_utils._pci_facts import gather


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
    report = fleet_report(hostvars, ["pve2", "pve1", "unreached"])
    data = json.loads(report["json"])
    assert sorted(data) == ["pve1", "pve2"]
    assert [n["address"] for n in data["pve2"]["nics"]] == ["0000:05:00.0", "0000:06:00.0"]
    assert data["pve2"]["readiness"]["boot_loader"] == "systemd-boot (proxmox-boot-tool status: ESP in uefi mode)"
    md = report["markdown"]
    assert md.index("## pve1") < md.index("## pve2")
    assert "unreached" not in md
    assert "| 0000:02:00.0 | 8086:15f3 | igc | 12 |" in md
    assert FilterModule().filters() == {"nic_table": nic_table, "fleet_report": fleet_report}


def test_the_table_and_the_report_show_hand_made_configuration_with_its_problems():
    facts = {"vfio_pci_devices": [], "vfio_iommu_groups": {}, "vfio_host": {"handmade": [
        {"file": "/etc/modprobe.d/blacklist.conf", "line": 1, "text": "blacklist e1000e", "kind": "blacklist",
         "problems": ["blacklists e1000e, the driver of the management NIC 0000:00:1f.6 (eno1)"]},
        {"file": "/etc/modules", "line": 2, "text": "vfio", "kind": "load", "problems": []}]}}
    table = nic_table(facts)
    assert "configured by hand (2 lines):" in table
    assert ("  /etc/modprobe.d/blacklist.conf:1: blacklist e1000e  <- blacklists e1000e, the driver of the "
            "management NIC 0000:00:1f.6 (eno1)") in table.splitlines()
    report = fleet_report({"pve1": {"ansible_facts": facts}}, ["pve1"])
    assert "- `/etc/modules:2: vfio`" in report["markdown"].splitlines()
    assert '"handmade"' in report["json"]
