"""The systemd-boot node: /etc/kernel/cmdline token by token, one proxmox-boot-tool refresh."""

from __future__ import annotations

from nodes import hosts, kmod_config

testinfra_hosts = hosts("amd-zfs-uefi")


def test_systemd_boot_node_keeps_root_and_foreign_tokens_and_refreshes_once(host):
    assert host.file("/etc/kernel/cmdline").content_string == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    log = host.file("/var/log/proxmox-boot-tool-double.log").content_string.splitlines()
    assert log.count("refresh") == 1
    assert "options vfio_pci ids=8086:125c" in kmod_config(host)
    assert not host.file("/etc/default/grub.d/vfio-proxmox.cfg").exists
