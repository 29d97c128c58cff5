"""The identical dual-port node: only the selected port, bound by address."""

from __future__ import annotations

import re

from nodes import hosts, kmod_config, linux_lines

testinfra_hosts = hosts("dual-port-igb")


def test_dual_port_node_binds_only_the_selected_port_by_address(host):
    config = kmod_config(host)
    assert [line for line in config if "vfio_pci ids=" in line] == []
    assert [line for line in config if "8086:1521" in line] == []
    script = host.file("/etc/initramfs-tools/scripts/init-top/vfio-proxmox").content_string
    assert "bind 0000:01:00.1 8086:1521" in script.splitlines()
    assert "0000:01:00.0" not in script
    # Kernel 6.5 on Intel: intel_iommu=on is still needed; vfio_virqfd is part of vfio since 6.2.
    assert [line for line in linux_lines(host) if not re.search(r" intel_iommu=on iommu=pt( |$)", line)] == []
    assert "vfio_virqfd" not in host.file("/etc/modules-load.d/vfio-proxmox.conf").content_string
