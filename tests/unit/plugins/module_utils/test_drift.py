"""The converged-run check: which owned files differ from what the role would write."""

from __future__ import annotations

import hashlib

from ansible_collections.vfio.proxmox.plugins.module_utils._drift import drift

CONF = "/etc/modprobe.d/vfio-proxmox.conf"
DROPIN = "/etc/default/grub.d/vfio-proxmox.cfg"
TEXT = "# Ansible managed\noptions vfio-pci ids=8086:15f3\n"


def found(path: str, text: str = TEXT, mode: str = "0644", uid: int = 0, gid: int = 0) -> dict:
    return {"path": path, "checksum": hashlib.sha1(text.encode()).hexdigest(), "mode": mode, "uid": uid, "gid": gid}


def test_identical_files_and_absent_ones_do_not_differ():
    assert drift([found(CONF)], {CONF: {"content": TEXT, "mode": "0644"}, DROPIN: None}) == []


def test_missing_changed_or_unwanted_files_differ():
    want = {CONF: {"content": TEXT, "mode": "0644"}, DROPIN: None}
    assert drift([], want) == [CONF]
    assert drift([found(CONF, TEXT + "# edited by hand\n")], want) == [CONF]
    assert drift([found(CONF), found(DROPIN)], want) == [DROPIN]


def test_mode_and_owner_count():
    want = {CONF: {"content": TEXT, "mode": "0644"}}
    assert drift([found(CONF, mode="0664")], want) == [CONF]
    assert drift([found(CONF, uid=1000)], want) == [CONF]
    assert drift([found(CONF, gid=4)], want) == [CONF]
