"""The file_state module: every path reported, text read on request, refusals."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import file_state
from tests.unit.module_args import patch_module_args


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        file_state.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def test_reports_paths_and_reads_named_ones_in_check_mode(capsys, tmp_path):
    conf, record, missing = tmp_path / "vfio.conf", tmp_path / "selected.yml", tmp_path / "none"
    conf.write_text("options vfio-pci ids=8086:15f3\n")
    record.write_text("interface=enp2s0: '0000:02:00.0'\n")
    code, out = run(capsys, paths=[str(conf), str(missing)], read=[str(record)], _ansible_check_mode=True)
    assert (code, out["changed"]) == (0, False)
    assert sorted(out["files"]) == sorted([str(conf), str(missing), str(record)])
    assert out["files"][str(conf)]["exists"] is True and "content" not in out["files"][str(conf)]
    assert out["files"][str(missing)] == {"path": str(missing), "exists": False}
    assert out["files"][str(record)]["content"] == "interface=enp2s0: '0000:02:00.0'\n"


def test_relative_paths_are_refused(capsys):
    code, out = run(capsys, paths=["etc/modprobe.d/vfio-proxmox.conf"])
    assert code == 1
    assert out["msg"] == "file_state: paths must be absolute, got etc/modprobe.d/vfio-proxmox.conf"


def test_a_path_that_cannot_be_looked_at_fails_naming_it(capsys, tmp_path):
    parent = tmp_path / "a-file"
    parent.write_text("x")
    code, out = run(capsys, paths=[str(parent / "child")])
    assert (code, out["msg"]) == (1, "file_state: %s cannot be read: Not a directory" % (parent / "child"))


def test_too_large_text_fails_naming_it(capsys, tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * (2 * 1024 * 1024))
    code, out = run(capsys, paths=[], read=[str(path)])
    assert code == 1
    assert out["msg"].startswith("file_state: %s cannot be read: %s is 2097152 bytes" % (path, path))
