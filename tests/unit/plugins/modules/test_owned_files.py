"""The owned_files module: every step in order, idempotent, check and diff mode, refusals."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import owned_files
from tests.unit.module_args import patch_module_args


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        owned_files.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None, stat.S_IMODE(p.lstat().st_mode))
                  for p in root.rglob("*"))


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "etc" / "modprobe.d").mkdir(parents=True)
    (tmp_path / "etc" / "modprobe.d" / "foreign.conf").write_text("options vfio-pci disable_vga=1\n")
    (tmp_path / "etc" / "old").write_text("stale\n")
    return tmp_path


def args_for(tree):
    conf = str(tree / "etc" / "modprobe.d" / "foreign.conf")
    return {"directories": [str(tree / "etc" / "vfio-proxmox")],
            "backup": [conf],
            "files": [{"path": str(tree / "etc" / "vfio-proxmox" / "rebuild-pending"), "content": "initramfs\n",
                       "mode": "0644"},
                      {"path": conf, "content": "options vfio-pci ids=8086:15f3\n", "mode": "0640"}],
            "remove": [str(tree / "etc" / "old"), str(tree / "etc" / "never-there")]}


def test_writes_in_order_then_changes_nothing(capsys, tree):
    code, out = run(capsys, **args_for(tree))
    assert (code, out["changed"]) == (0, True)
    etc = tree / "etc"
    assert out["created_dirs"] == [str(etc / "vfio-proxmox")]
    assert out["backed_up"] == [str(etc / "modprobe.d" / "foreign.conf")]
    assert (etc / "modprobe.d" / "foreign.conf.vfio-proxmox-backup").read_text() == "options vfio-pci disable_vga=1\n"
    assert (etc / "modprobe.d" / "foreign.conf").read_text() == "options vfio-pci ids=8086:15f3\n"
    assert stat.S_IMODE((etc / "modprobe.d" / "foreign.conf").stat().st_mode) == 0o640
    assert (etc / "vfio-proxmox" / "rebuild-pending").read_text() == "initramfs\n"
    assert out["removed"] == [str(etc / "old")] and not (etc / "old").exists()
    assert not list(etc.rglob(".vfio-proxmox-*"))  # no temporary file left
    before = snapshot(tree)
    code, out = run(capsys, **args_for(tree))
    assert (code, out["changed"]) == (0, False)
    assert snapshot(tree) == before


def test_a_mode_change_alone_is_a_change(capsys, tree):
    run(capsys, **args_for(tree))
    os.chmod(tree / "etc" / "modprobe.d" / "foreign.conf", 0o600)
    code, out = run(capsys, **args_for(tree))
    assert out["written"] == [str(tree / "etc" / "modprobe.d" / "foreign.conf")]


def test_check_mode_reports_everything_and_touches_nothing(capsys, tree):
    before = snapshot(tree)
    code, out = run(capsys, _ansible_check_mode=True, _ansible_diff=True, **args_for(tree))
    assert (code, out["changed"]) == (0, True)
    assert snapshot(tree) == before
    assert len(out["written"]) == 2 and out["removed"] == [str(tree / "etc" / "old")]
    diff = {d["after_header"]: d for d in out["diff"]}
    conf = str(tree / "etc" / "modprobe.d" / "foreign.conf")
    assert (diff[conf]["before"], diff[conf]["after"]) == ("options vfio-pci disable_vga=1\n",
                                                           "options vfio-pci ids=8086:15f3\n")
    assert diff[str(tree / "etc" / "old")]["after"] == ""


def test_restore_moves_the_copy_back_and_empty_dirs_go(capsys, tree):
    run(capsys, **args_for(tree))
    conf = str(tree / "etc" / "modprobe.d" / "foreign.conf")
    pending = tree / "etc" / "vfio-proxmox" / "rebuild-pending"
    code, out = run(capsys, remove=[str(pending)], restore=[{"path": conf, "backup": conf + ".vfio-proxmox-backup"}],
                    remove_empty_dirs=[str(tree / "etc" / "vfio-proxmox"), str(tree / "etc" / "modprobe.d")])
    assert out["restored"] == [conf] and out["removed_dirs"] == [str(tree / "etc" / "vfio-proxmox")]
    assert (tree / "etc" / "modprobe.d" / "foreign.conf").read_text() == "options vfio-pci disable_vga=1\n"
    assert not os.path.exists(conf + ".vfio-proxmox-backup")
    assert (tree / "etc" / "modprobe.d").is_dir()  # not empty: kept


def test_an_existing_copy_is_never_overwritten(capsys, tree):
    conf = tree / "etc" / "modprobe.d" / "foreign.conf"
    (tree / "etc" / "modprobe.d" / "foreign.conf.vfio-proxmox-backup").write_text("the first original\n")
    code, out = run(capsys, **args_for(tree))
    assert out["backed_up"] == []
    assert (tree / "etc" / "modprobe.d" / "foreign.conf.vfio-proxmox-backup").read_text() == "the first original\n"
    assert conf.read_text() == "options vfio-pci ids=8086:15f3\n"


@pytest.mark.parametrize("bad, message", [
    ({"files": [{"path": "etc/x", "content": "", "mode": "0644"}]}, "owned_files: paths must be absolute, got etc/x"),
    ({"files": [{"path": "/nonexistent-dir/x", "content": "", "mode": "rw-r--r--"}]},
     "owned_files: files[].mode 'rw-r--r--' of /nonexistent-dir/x is not an octal mode such as 0644"),
])
def test_bad_arguments_fail_before_any_write(capsys, tree, bad, message):
    code, out = run(capsys, **bad)
    assert (code, out["msg"]) == (1, message)


def test_a_directory_at_a_file_path_fails_naming_it(capsys, tree):
    (tree / "etc" / "adir").mkdir()
    code, out = run(capsys, files=[{"path": str(tree / "etc" / "adir"), "content": "x", "mode": "0644"}])
    assert code == 1 and out["msg"] == "owned_files: %s exists and is not a regular file" % (tree / "etc" / "adir")


def test_copies_keep_bytes_mode_and_times_before_the_write_and_the_first_copy_stays(capsys, tree):
    conf = tree / "etc" / "modprobe.d" / "foreign.conf"
    conf.write_bytes(b"options vfio-pci ids=8086:15f3 \t\r\n# no newline at the end")
    os.chmod(conf, 0o600)
    os.utime(conf, (1_000_000_000, 1_000_000_000))
    before = conf.read_bytes()
    kept = tree / "etc" / "vfio-proxmox" / "adopted" / "foreign.conf"
    args = {"directories": [str(kept.parent)], "copies": [{"path": str(conf), "copy": str(kept)}],
            "files": [{"path": str(conf), "content": "#adopted\n", "mode": "0600"}]}
    code, out = run(capsys, **args)
    assert out["copied"] == [str(conf)] and out["written"] == [str(conf)]
    assert kept.read_bytes() == before
    assert (stat.S_IMODE(kept.stat().st_mode), kept.stat().st_mtime) == (0o600, 1_000_000_000)
    conf.write_text("edited again\n")
    code, out = run(capsys, **args)
    assert out["copied"] == [] and kept.read_bytes() == before
    code, out = run(capsys, restore=[{"path": str(conf), "backup": str(kept)}])
    assert conf.read_bytes() == before and stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert not kept.exists()


def test_a_copy_of_a_file_that_is_gone_fails_before_any_write(capsys, tree):
    before = snapshot(tree)
    code, out = run(capsys, copies=[{"path": str(tree / "etc" / "gone"), "copy": str(tree / "etc" / "gone.copy")}],
                    files=[{"path": str(tree / "etc" / "new"), "content": "x\n", "mode": "0644"}])
    assert code == 1 and out["msg"] == "owned_files: %s cannot be copied: it is gone" % (tree / "etc" / "gone")
    assert snapshot(tree) == before


def test_a_symbolic_link_is_removed_not_followed(capsys, tree):
    target = tree / "etc" / "old"
    link = tree / "etc" / "enabled.service"
    link.symlink_to("old")
    code, out = run(capsys, remove=[str(link)])
    assert (code, out["removed"]) == (0, [str(link)])
    assert not os.path.lexists(link) and target.read_text() == "stale\n"


def test_a_script_in_init_top_is_kept_aside_under_a_name_initramfs_tools_does_not_run(capsys, tmp_path):
    """initramfs-tools runs every executable in scripts/init-top named only [[:alnum:]._-] (hook-functions
    set_initlist): the kept-aside script, executable as it was, ends in `~`, and comes back byte for byte."""
    script = tmp_path / "etc" / "initramfs-tools" / "scripts" / "init-top" / "vfio-proxmox"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\necho the administrator's own\n")
    script.chmod(0o755)
    code, out = run(capsys, backup=[str(script)], files=[{"path": str(script), "content": "# vfio.proxmox: x\n",
                                                          "mode": "0755"}])
    assert (code, out["backed_up"]) == (0, [str(script)])
    kept = script.parent / "vfio-proxmox.vfio-proxmox-backup~"
    assert sorted(p.name for p in script.parent.iterdir()) == ["vfio-proxmox", kept.name]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o755
    code, out = run(capsys, restore=[{"path": str(script), "backup": str(kept)}])
    assert (code, out["restored"]) == (0, [str(script)])
    assert script.read_text() == "#!/bin/sh\necho the administrator's own\n" and not kept.exists()
