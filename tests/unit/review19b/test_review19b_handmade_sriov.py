"""Review 19b (adversarial): hand-made vfio-pci bindings next to an SR-IOV-only run."""

from __future__ import annotations

import pytest

from tests.unit.review19.test_review19_adopt import Node

PF = "0000:04:00.0"


@pytest.mark.parametrize("vfs", [2, 4])
def test_a_hand_made_ids_line_that_takes_the_host_vfs_at_boot_is_refused(fake_node, vfs):
    """/etc/modprobe.d/vfio.conf has `options vfio-pci ids=8086:154c` (from a guide, for VFs once given to VMs) and
    /etc/modules loads vfio_pci. passthrough_sriov now gives the X710's VFs to the host (vf_driver: host). At boot
    vfio-pci is registered (systemd-modules-load) before vfio-proxmox-sriov.service creates the VFs, so vfio-pci -
    holding 154c as a dynamic ID - takes every new VF before iavf is even loaded: the host's VF interfaces never
    appear (a bridge or the management path on a VF is gone after the reboot). The composer refuses exactly this
    for the role's own ids= (_ids_take_host_vfs); a hand-made line doing the same passes without a word."""
    node = Node(fake_node, {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:154c\n",
                            "/etc/modules": "vfio_pci\n"}, profile="sriov-x710")
    plan = node.plan(sriov=[{"address": PF, "vfs": vfs, "vf_driver": "host"}])
    assert [m for m in plan["errors"] + plan["warnings"] if "/etc/modprobe.d/vfio.conf" in m], (
        plan["errors"], plan["warnings"])
