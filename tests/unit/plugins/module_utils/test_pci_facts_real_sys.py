"""Read-only: pci_facts on this machine's real /sys agrees with lspci (pciutils)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather


def lspci_devices() -> dict[str, dict[str, str]]:
    """Parse `lspci -Dnvmmk`: the machine-readable form that also names the driver."""
    out = subprocess.run(["lspci", "-Dnvmmk"], check=True, capture_output=True, text=True).stdout
    devices = {}
    for block in out.strip().split("\n\n"):
        fields = dict(line.split(":\t", 1) for line in block.splitlines() if ":\t" in line)
        devices[fields["Slot"]] = fields
    return devices


def run(argv):
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.skipif(shutil.which("lspci") is None, reason="pciutils is installed by scripts/setup")
def test_real_sys_agrees_with_lspci():
    expected = lspci_devices()
    assert expected, "lspci saw no PCI devices on this machine"
    result = gather(sysfs_root="/sys", procfs_root="/proc", etc_root="/", run=run, which=shutil.which)
    got = {d["address"]: d for d in result["ansible_facts"]["vfio_pci_devices"]}
    assert sorted(got) == sorted(expected)
    for address, want in expected.items():
        dev = got[address]
        assert dev["vendor"] == want["Vendor"], address
        assert dev["device"] == want["Device"], address
        assert dev["class"][:4] == want["Class"], address
        assert dev["class"][4:] == want.get("ProgIf", "00"), address
        assert dev["revision"] == want.get("Rev", "00"), address
        assert dev["subsystem_vendor"] == want.get("SVendor", "0000"), address
        assert dev["subsystem_device"] == want.get("SDevice", "0000"), address
        assert dev["driver"] == want.get("Driver"), address
