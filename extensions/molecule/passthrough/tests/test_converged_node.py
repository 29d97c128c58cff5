"""Facts about each converged node, read through the real tools (testinfra, podman backend).

kmod's view of the modprobe files (`modprobe -c`), what went into every initramfs
(`lsinitramfs`), every `linux` line of the grub.cfg that the real update-grub wrote,
/etc/kernel/cmdline and the proxmox-boot-tool double's log, and that nothing but the
role's own files changed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(REPO))
from tests.sim.podman import env as podman_env  # noqa: E402

CLUSTER = "molecule-passthrough"
INVENTORY = REPO / ".cache" / "nodes" / CLUSTER / "inventory.yml"
NODES = yaml.safe_load(INVENTORY.read_text())["all"]["hosts"] if INVENTORY.exists() else {}
os.environ.update(CONTAINERS_CONF=podman_env()["CONTAINERS_CONF"])  # podman exec with the project's config
testinfra_hosts = ["podman://%s" % name for name in sorted(NODES)]

OWNED = ["/etc/modprobe.d/vfio-proxmox.conf", "/etc/modules-load.d/vfio-proxmox.conf",
         "/etc/default/grub.d/vfio-proxmox.cfg", "/etc/initramfs-tools/scripts/init-top/vfio-proxmox",
         "/etc/vfio-proxmox/cmdline-added", "/etc/vfio-proxmox/state.json"]
EDITED = ["/etc/initramfs-tools/modules", "/etc/kernel/cmdline", "/boot/grub/grub.cfg"]
PRISTINE = "/var/tmp/vfio-test/pristine.sha256"


def profile(host) -> str:
    return NODES[host.backend.name]["vfio_sim_profile"]


def kmod_config(host) -> list[str]:
    return host.check_output("modprobe -c").splitlines()


def linux_lines(host) -> list[str]:
    return [line for line in host.file("/boot/grub/grub.cfg").content_string.splitlines()
            if re.match(r"\s*linux\s", line)]


def only_for(host, *profiles) -> None:
    if profile(host) not in profiles:
        pytest.skip("checked on %s only" % ", ".join(profiles))


def test_every_owned_file_starts_with_the_managed_comment_and_a_marker(host):
    wanted = {"guide-intel": {"/etc/default/grub.d/vfio-proxmox.cfg"},
              "dual-port-igb": {"/etc/default/grub.d/vfio-proxmox.cfg",
                                "/etc/initramfs-tools/scripts/init-top/vfio-proxmox"},
              "amd-zfs-uefi": {"/etc/vfio-proxmox/cmdline-added"}}[profile(host)]
    for path in OWNED:
        optional = path in ("/etc/default/grub.d/vfio-proxmox.cfg", "/etc/initramfs-tools/scripts/init-top/vfio-proxmox",
                            "/etc/vfio-proxmox/cmdline-added")
        assert host.file(path).exists == (not optional or path in wanted), path
        if host.file(path).exists:
            head = host.file(path).content_string.splitlines()[:3]
            assert any("Ansible managed" in line for line in head), path
            assert any("vfio.proxmox:" in line for line in head), path


def test_every_initramfs_holds_the_vfio_modules_and_the_role_s_files(host):
    images = host.check_output("ls /boot/initrd.img-*").split()
    assert images
    for image in images:
        listing = host.check_output("lsinitramfs %s" % image).splitlines()
        for module in (r"/vfio/vfio\.ko", r"/vfio/pci/vfio-pci\.ko", r"/vfio/vfio_iommu_type1\.ko"):
            assert len([line for line in listing if re.search(module, line)]) == 1, (image, module)
        assert "etc/modprobe.d/vfio-proxmox.conf" in listing, image
        assert ("scripts/init-top/vfio-proxmox" in listing) == (profile(host) == "dual-port-igb"), image


def test_only_owned_and_edited_files_changed(host):
    pristine = json.loads(host.file(PRISTINE).content_string)
    now = dict(reversed(line.split(None, 1)) for line in host.check_output(
        "find /etc /boot/grub -type f -exec sha1sum {} +").splitlines())
    changed = sorted(p for p in set(now) | set(pristine) if now.get(p) != pristine.get(p))
    assert sorted(set(changed) - set(OWNED) - set(EDITED)) == []


def test_grub_node_binds_by_id_with_a_softdep_and_every_linux_line_has_the_tokens(host):
    only_for(host, "guide-intel")
    config = kmod_config(host)
    assert "options vfio_pci ids=8086:15f3" in config
    assert "softdep igc pre: vfio-pci" in config
    # The running kernel is 6.8, but Debian 12's 6.1 kernel (the image's real one) is installed
    # too and needs intel_iommu=on: every bootable kernel counts.
    lines = linux_lines(host)
    assert len(lines) >= 2
    assert [line for line in lines if not re.search(r" intel_iommu=on iommu=pt( |$)", line)] == []


def test_dual_port_node_binds_only_the_selected_port_by_address(host):
    only_for(host, "dual-port-igb")
    config = kmod_config(host)
    assert [line for line in config if "vfio_pci ids=" in line] == []
    assert [line for line in config if "8086:1521" in line] == []
    script = host.file("/etc/initramfs-tools/scripts/init-top/vfio-proxmox").content_string
    assert "bind 0000:01:00.1 8086:1521" in script.splitlines()
    assert "0000:01:00.0" not in script
    # Kernel 6.5 on Intel: intel_iommu=on is still needed; vfio_virqfd is part of vfio since 6.2.
    assert [line for line in linux_lines(host) if not re.search(r" intel_iommu=on iommu=pt( |$)", line)] == []
    assert "vfio_virqfd" not in host.file("/etc/modules-load.d/vfio-proxmox.conf").content_string


def test_systemd_boot_node_keeps_root_and_foreign_tokens_and_refreshes_once(host):
    only_for(host, "amd-zfs-uefi")
    assert host.file("/etc/kernel/cmdline").content_string == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    log = host.file("/var/log/proxmox-boot-tool-double.log").content_string.splitlines()
    assert log.count("refresh") == 1
    assert "options vfio_pci ids=8086:125c" in kmod_config(host)
    assert not host.file("/etc/default/grub.d/vfio-proxmox.cfg").exists
