"""The GRUB node (guide-intel): ID binding with a softdep; every grub.cfg linux line has the tokens."""

from __future__ import annotations

import re

from nodes import hosts, kmod_config, linux_lines

testinfra_hosts = hosts("guide-intel")


def test_grub_node_binds_by_id_with_a_softdep_and_every_linux_line_has_the_tokens(host):
    config = kmod_config(host)
    assert "options vfio_pci ids=8086:15f3" in config
    assert "softdep igc pre: vfio-pci" in config
    # The running kernel is 6.8, but Debian 12's 6.1 kernel (the image's real one) is installed
    # too and needs intel_iommu=on: every bootable kernel counts.
    lines = linux_lines(host)
    assert len(lines) >= 2
    assert [line for line in lines if not re.search(r" intel_iommu=on iommu=pt( |$)", line)] == []
