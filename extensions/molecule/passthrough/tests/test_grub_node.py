"""The GRUB node (guide-intel): ID binding with a softdep; every grub.cfg linux line has the tokens."""

from __future__ import annotations

import re

from nodes import hosts, kmod_config, linux_lines

testinfra_hosts = hosts("guide-intel")


def test_grub_node_binds_by_id_with_a_softdep_and_every_linux_line_has_the_tokens(host):
    config = kmod_config(host)
    assert "options vfio_pci ids=8086:15f3" in config
    assert "softdep igc pre: vfio-pci" in config
    # Its one installed kernel is Proxmox VE 8's 6.8.12-4-pve (the profile's): the Intel IOMMU is on by
    # default from 6.8, so no intel_iommu=on - every linux line of the real grub.cfg (normal and recovery)
    # boots that kernel with iommu=pt. (An older kernel installed beside it: unit tests, test_plan_guards.)
    lines = linux_lines(host)
    assert len(lines) >= 2
    assert [line for line in lines if "/vmlinuz-6.8.12-4-pve " not in line] == []
    assert [line for line in lines if not re.search(r" iommu=pt( |$)", line) or "intel_iommu=on" in line] == []
