"""sysfsutils writes to every path its shell glob finds (`for path in /sys/$f1`, Debian's /etc/init.d/sysfsutils):
a glob that reaches a PF sets its count at boot as surely as its literal path (discovery/_sysfs_conf.py)."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._sysfs_conf import sets_count_of
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import sriov_plan

PF = "0000:04:00.0"


def plan_with(fake_node, conf: str) -> dict:
    node = fake_node("sriov-x710", mutate=lambda p: p["files"].update({"/etc/sysfs.d/60-vfs.conf": conf}))
    facts = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    return sriov_plan(facts, [{"address": PF, "vfs": 2}])


@pytest.mark.parametrize("attribute", [
    "class/net/enp4s0f*/device/sriov_numvfs", "class/net/enp4s0f[01]np0/device/sriov_numvfs",
    "bus/pci/devices/0000:04:00.?/sriov_numvfs", "/bus/pci/devices/0000:04:*/sriov_numvfs",
    "devices/pci0000:00/*/*/sriov_numvfs",  # reached through the topology: may be any PF
])
def test_a_glob_that_reaches_the_pf_is_refused(fake_node, attribute):
    errors = plan_with(fake_node, "%s = 4\n" % attribute)["errors"]
    assert errors == ["passthrough_sriov[0]: /etc/sysfs.d/60-vfs.conf:1 sets the VF count of 0000:04:00.0 at every "
                      "boot (sysfsutils: %s = 4) - two tools would set it; remove that line, or this entry" % attribute]


@pytest.mark.parametrize("attribute", ["class/net/ens1f*/device/sriov_numvfs", "bus/pci/devices/0000:05:*/sriov_numvfs",
                                       "class/net/enp*/device/mtu"])
def test_a_glob_that_cannot_reach_the_pf_is_no_conflict(fake_node, attribute):
    assert plan_with(fake_node, "%s = 4\n" % attribute)["errors"] == []


def test_a_literal_line_keeps_its_address_or_interface():
    line = {"address": None, "interface": "enp4s0f0np0", "pattern": None}
    assert sets_count_of(line, PF, {"enp4s0f0np0"}) and not sets_count_of(line, PF, {"eno1"})
