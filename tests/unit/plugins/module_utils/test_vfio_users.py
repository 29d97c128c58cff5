"""Which processes hold a VFIO group open, from a fake /proc."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vfio_users import vfio_users


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


def test_an_unreadable_proc_holds_nothing(tmp_path):
    assert vfio_users(str(tmp_path / "missing")) == {}
