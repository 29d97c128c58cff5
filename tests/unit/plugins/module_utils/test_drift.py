"""The converged-run check: which owned files differ from what the role would write."""

from __future__ import annotations

import hashlib

from ansible_collections.vfio.proxmox.plugins.module_utils._drift import drift

CONF = "/etc/modprobe.d/vfio-proxmox.conf"
DROPIN = "/etc/default/grub.d/vfio-proxmox.cfg"
MODULES = "/etc/initramfs-tools/modules"
TEXT = "# Ansible managed\noptions vfio-pci ids=8086:15f3\n"
MARKER = "# {mark} vfio.proxmox: vfio modules for the initramfs"
LINES = ("vfio", "vfio_iommu_type1", "vfio_pci")
BLOCK = ("# BEGIN vfio.proxmox: vfio modules for the initramfs\nvfio\nvfio_iommu_type1\nvfio_pci\n"
         "# END vfio.proxmox: vfio modules for the initramfs\n")


def seen(path: str, text: str = TEXT, kind: str = "file", mode: str = "0644", uid: int = 0, gid: int = 0) -> dict:
    """One entry as file_state reports it."""
    return {path: {"path": path, "exists": True, "type": kind, "checksum": hashlib.sha1(text.encode()).hexdigest(),
                   "mode": mode, "uid": uid, "gid": gid, "content": text}}


def want(path: str, content: str | None = TEXT) -> dict:
    return {"path": path, "content": content, "mode": "0644"}


def block(lines=LINES) -> dict:
    return {"path": MODULES, "marker": MARKER, "block": list(lines)}


def test_identical_files_and_absent_ones_do_not_differ():
    assert drift(seen(CONF), [want(CONF), want(DROPIN, None)]) == []
    assert drift(seen(CONF) | {DROPIN: {"path": DROPIN, "exists": False}}, [want(CONF), want(DROPIN, None)]) == []


def test_missing_changed_or_unwanted_files_differ():
    desired = [want(CONF), want(DROPIN, None)]
    assert drift({}, desired) == [CONF]
    assert drift({CONF: {"path": CONF, "exists": False}}, desired) == [CONF]
    assert drift(seen(CONF, TEXT + "# edited by hand\n"), desired) == [CONF]
    assert drift(seen(CONF) | seen(DROPIN), desired) == [DROPIN]


def test_type_mode_and_owner_count():
    assert drift(seen(CONF, kind="link"), [want(CONF)]) == [CONF]
    assert drift(seen(CONF, mode="0664"), [want(CONF)]) == [CONF]
    assert drift(seen(CONF, uid=1000), [want(CONF)]) == [CONF]
    assert drift(seen(CONF, gid=4), [want(CONF)]) == [CONF]


def test_the_block_must_be_there_exactly_as_blockinfile_writes_it():
    assert drift(seen(MODULES, "# List of modules\nloop\n" + BLOCK + "dm_mod\n"), [block()]) == []
    assert drift(seen(MODULES, "loop\n" + BLOCK.rstrip("\n")), [block()]) == []
    assert drift(seen(MODULES, "loop\n" + BLOCK.replace("vfio_pci\n", "")), [block()]) == [MODULES]
    assert drift(seen(MODULES, "loop\n" + BLOCK.replace("vfio\n", "vfio\nvfio_virqfd\n")), [block()]) == [MODULES]
    assert drift(seen(MODULES, "loop\n" + BLOCK.replace("\nvfio\n", "\n  vfio\n")), [block()]) == [MODULES]
    assert drift(seen(MODULES, "loop\n"), [block()]) == [MODULES]
    assert drift({MODULES: {"path": MODULES, "exists": False}}, [block()]) == [MODULES]


def test_unmanaged_entries_are_ignored():
    assert drift({}, [dict(want(DROPIN), manage=False)]) == []
