"""Facts about each converged node, read through the real tools (testinfra, podman backend).

What went into every initramfs (`lsinitramfs`), the role's file headers, and that nothing
but the role's own files changed. The per-profile facts are in the test_*_node.py beside it.
"""

from __future__ import annotations

import json
import re

from nodes import hosts, profile

testinfra_hosts = hosts()

OWNED = ["/etc/modprobe.d/vfio-proxmox.conf", "/etc/modules-load.d/vfio-proxmox.conf",
         "/etc/default/grub.d/vfio-proxmox.cfg", "/etc/initramfs-tools/scripts/init-top/vfio-proxmox",
         "/etc/vfio-proxmox/cmdline-added", "/etc/vfio-proxmox/state.json"]
EDITED = ["/etc/initramfs-tools/modules", "/etc/kernel/cmdline", "/boot/grub/grub.cfg"]
PRISTINE = "/var/tmp/vfio-test/pristine.sha256"


def test_every_owned_file_starts_with_the_managed_comment_and_a_marker(host):
    wanted = {"guide-intel": {"/etc/default/grub.d/vfio-proxmox.cfg"},
              "dual-port-igb": {"/etc/default/grub.d/vfio-proxmox.cfg",
                                "/etc/initramfs-tools/scripts/init-top/vfio-proxmox"},
              "amd-zfs-uefi": {"/etc/vfio-proxmox/cmdline-added"}}[profile(host)]
    optional = {"/etc/default/grub.d/vfio-proxmox.cfg", "/etc/initramfs-tools/scripts/init-top/vfio-proxmox",
                "/etc/vfio-proxmox/cmdline-added"}
    for path in OWNED:
        assert host.file(path).exists == (path not in optional or path in wanted), path
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
    roots = " ".join(d for d in ("/etc", "/boot/grub") if host.file(d).is_directory)
    now = dict(reversed(line.split(None, 1)) for line in host.check_output(
        "find %s -type f -exec sha1sum {} +" % roots).splitlines())
    changed = sorted(p for p in set(now) | set(pristine) if now.get(p) != pristine.get(p))
    assert sorted(set(changed) - set(OWNED) - set(EDITED)) == []
