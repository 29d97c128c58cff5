"""The converged-run check: which owned files differ from what the role would write."""

from __future__ import annotations

import hashlib
import re

from ansible_collections.vfio.proxmox.plugins.module_utils._drift import block_pattern, drift

CONF = "/etc/modprobe.d/vfio-proxmox.conf"
DROPIN = "/etc/default/grub.d/vfio-proxmox.cfg"
RECORD = "/etc/vfio-proxmox/selected.yml"
TEXT = "# Ansible managed\noptions vfio-pci ids=8086:15f3\n"
MARKER = "# {mark} vfio.proxmox: vfio modules for the initramfs"


def found(path: str, text: str = TEXT, mode: str = "0644", uid: int = 0, gid: int = 0) -> dict:
    return {"path": path, "checksum": hashlib.sha1(text.encode()).hexdigest(), "mode": mode, "uid": uid, "gid": gid}


def want(path: str, content: str | None = TEXT) -> dict:
    return {"path": path, "content": content, "mode": "0644"}


def test_identical_files_and_absent_ones_do_not_differ():
    assert drift([found(CONF)], [want(CONF), want(DROPIN, None)]) == []


def test_missing_changed_or_unwanted_files_differ():
    desired = [want(CONF), want(DROPIN, None)]
    assert drift([], desired) == [CONF]
    assert drift([found(CONF, TEXT + "# edited by hand\n")], desired) == [CONF]
    assert drift([found(CONF), found(DROPIN)], desired) == [DROPIN]


def test_mode_and_owner_count():
    assert drift([found(CONF, mode="0664")], [want(CONF)]) == [CONF]
    assert drift([found(CONF, uid=1000)], [want(CONF)]) == [CONF]
    assert drift([found(CONF, gid=4)], [want(CONF)]) == [CONF]


def test_files_already_read_are_compared_by_content():
    assert drift([], [want(RECORD, "a: 1\n")], {RECORD: "a: 1\n"}) == []
    assert drift([], [want(RECORD, "a: 1\n")], {RECORD: "a: 2\n"}) == [RECORD]
    assert drift([], [want(RECORD, "a: 1\n")], {RECORD: None}) == [RECORD]


def test_block_pattern_matches_exactly_the_block_blockinfile_writes():
    pattern = re.compile(block_pattern(MARKER, ["vfio", "vfio_iommu_type1", "vfio_pci"]))
    block = ("# BEGIN vfio.proxmox: vfio modules for the initramfs\nvfio\nvfio_iommu_type1\nvfio_pci\n"
             "# END vfio.proxmox: vfio modules for the initramfs\n")
    assert pattern.search("# List of modules\nloop\n" + block + "dm_mod\n")
    assert not pattern.search("loop\n" + block.replace("vfio_pci\n", ""))
    assert not pattern.search("loop\n" + block.replace("vfio\n", "vfio\nvfio_virqfd\n"))


def test_unmanaged_entries_are_ignored():
    assert drift([], [dict(want(DROPIN), manage=False)]) == []
