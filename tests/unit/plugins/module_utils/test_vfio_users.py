"""Which processes hold a VFIO group open, from a fake /proc."""

from __future__ import annotations

import os

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vfio_users import VfioUsersUnknown, vfio_users


def test_groups_held_open_are_named_with_the_process(tmp_path):
    proc = tmp_path / "proc"
    for pid, links, argv in (("901", ["/dev/vfio/vfio", "/dev/vfio/12", "/dev/vfio/12"], b"/usr/bin/kvm\x00-id\x00101"),
                             ("77", ["/dev/null", "socket:[123]"], b"/usr/sbin/sshd\x00-D"),
                             ("902", ["/dev/vfio/14"], b"/usr/bin/kvm\x00-id\x00102\x00-name\x00fw")):
        (proc / pid / "fd").mkdir(parents=True)
        for n, target in enumerate(links):
            (proc / pid / "fd" / str(n)).symlink_to(target)
        (proc / pid / "cmdline").write_bytes(argv)
    (proc / "self").mkdir()
    assert vfio_users(str(proc)) == {"12": ["901 (/usr/bin/kvm -id 101)"], "14": ["902 (/usr/bin/kvm -id 102)"]}


def test_a_proc_that_cannot_be_listed_is_unknown_not_empty(tmp_path):
    # Fail closed: {} would say "nobody holds a group", and a release would take a device from a VM.
    with pytest.raises(VfioUsersUnknown, match="missing cannot be read"):
        vfio_users(str(tmp_path / "missing"))


def test_a_process_whose_descriptors_cannot_be_read_is_unknown(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "901" / "fd").mkdir(parents=True)
    listdir = os.listdir

    def denied(path):
        if str(path).endswith("901/fd"):
            raise PermissionError(13, "Permission denied")
        return listdir(path)
    monkeypatch.setattr(os, "listdir", denied)
    with pytest.raises(VfioUsersUnknown, match="901/fd cannot be read .Permission denied."):
        vfio_users(str(proc))


def test_a_process_that_ended_meanwhile_holds_nothing(tmp_path):
    proc = tmp_path / "proc"
    (proc / "901").mkdir(parents=True)  # listed, but its fd directory is gone: it exited
    (proc / "902" / "fd").mkdir(parents=True)
    (proc / "902" / "fd" / "3").symlink_to("/dev/vfio/7")
    (proc / "902" / "cmdline").write_bytes(b"/usr/bin/kvm\x00-id\x00105")
    assert vfio_users(str(proc)) == {"7": ["902 (/usr/bin/kvm -id 105)"]}
