"""pci_facts alone on generated fake trees of growing size, timed in process.

Each tree has `size` PCI functions: network functions with an interface each,
one IOMMU group per function, spread over buses, devices and functions as a
large host lays them out. The module's own gather() reads the tree; the
median of repeated calls is kept.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from tests.sim.fakeroot import FakeNode

SIZES = (64, 512, 4096)


def generated_profile(size: int) -> dict:
    devices = []
    for index in range(size):
        bus, device, function = index // 256 + 1, (index // 8) % 32, index % 8
        address = "0000:%02x:%02x.%d" % (bus, device, function)
        devices.append({
            "address": address, "id": "8086:1521", "subsystem": "8086:0001", "class": "020000",
            "revision": "01", "name": "I350 Gigabit Network Connection", "driver": "igb", "group": 100 + index,
            "reset": ["flr"],
            "netdevs": [{"name": "enp%ds%df%d" % (bus, device, function), "mac": "02:00:00:%02x:%02x:%02x" % (
                index >> 16, (index >> 8) & 0xFF, index & 0xFF), "state": "up", "speed": 1000, "addresses": []}],
        })
    return {
        "name": "generated-%d" % size, "suite": None, "cpu": "intel", "kernel": "6.8.12-4-pve",
        "cmdline": "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet",
        "boot_loader": "grub", "efi": False, "iommu": True, "dmesg": "DMAR: IOMMU enabled\n",
        "vendors": {"8086": "Intel Corporation"}, "devices": devices, "interfaces": [], "files": {},
    }


def measure(repeat: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="vfio-bench-") as tmp:
        for size in SIZES:
            node = FakeNode(generated_profile(size), Path(tmp) / str(size))
            seconds = []
            for _attempt in range(repeat):
                start = time.perf_counter()
                facts = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
                seconds.append(time.perf_counter() - start)
            if len(facts["vfio_pci_devices"]) != size:
                raise SystemExit("bench: pci_facts found %d functions, expected %d"
                                 % (len(facts["vfio_pci_devices"]), size))
            median = statistics.median(seconds)
            rows.append({"functions": size, "seconds": median, "us_per_function": median / size * 1e6})
    return rows
