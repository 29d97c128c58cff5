"""The kernel_cmdline module on a real file: writes, check mode, diff, refusals."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import kernel_cmdline
from tests.unit.module_args import patch_module_args

LINE = "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        kernel_cmdline.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def cmdline(tmp_path):
    path = tmp_path / "cmdline"
    path.write_text(LINE)
    os.chmod(path, 0o640)
    return path


def test_adds_tokens_then_reports_no_change(capsys, cmdline):
    code, out = run(capsys, path=str(cmdline), present=["iommu=pt"], _ansible_diff=True)
    assert code == 0
    assert out["changed"] is True
    assert out["added"] == ["iommu=pt"]
    assert cmdline.read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert oct(cmdline.stat().st_mode & 0o777) == "0o640"
    assert out["diff"]["before"] == LINE
    assert out["diff"]["after"] == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert not list(cmdline.parent.glob(".*.tmp"))
    code, out = run(capsys, path=str(cmdline), present=["iommu=pt"])
    assert (code, out["changed"], out["added"]) == (0, False, [])


def test_check_mode_reports_without_writing(capsys, cmdline):
    code, out = run(capsys, path=str(cmdline), present=["iommu=pt"], _ansible_check_mode=True)
    assert (code, out["changed"], out["after"]) == (0, True, "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt")
    assert cmdline.read_text() == LINE


def test_removes_only_named_tokens(capsys, cmdline):
    cmdline.write_text("root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt quiet\n")
    code, out = run(capsys, path=str(cmdline), absent=["iommu=pt"])
    assert (code, out["changed"], out["removed"]) == (0, True, ["iommu=pt"])
    assert cmdline.read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet\n"


def test_bad_token_fails_before_writing(capsys, cmdline):
    code, out = run(capsys, path=str(cmdline), present=["root=/dev/sdb1"])
    assert code == 1
    assert out["msg"] == ("kernel_cmdline: present: 'root=/dev/sdb1' would change the root file system "
                          "token, which is never edited")
    assert cmdline.read_text() == LINE


def test_missing_file_fails_and_creates_nothing(capsys, tmp_path):
    path = tmp_path / "absent" / "cmdline"
    code, out = run(capsys, path=str(path), present=["iommu=pt"])
    assert code == 1
    assert out["msg"] == "kernel_cmdline: path %s cannot be read: No such file or directory" % path
    assert not path.parent.exists()


def test_record_remembers_only_added_tokens_and_remove_recorded_restores(capsys, cmdline, tmp_path):
    cmdline.write_text("root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n")
    record = tmp_path / "state" / "cmdline-added"
    code, out = run(capsys, path=str(cmdline), present=["iommu=pt", "pcie_aspm=off"], record=str(record))
    assert (code, out["changed"], out["added"]) == (0, True, ["pcie_aspm=off"])
    assert record.read_text().splitlines() == [
        "# Ansible managed: written by vfio.proxmox.kernel_cmdline",
        "# vfio.proxmox: kernel command line tokens added by the role (removed again on state=absent)",
        "pcie_aspm=off"]
    code, out = run(capsys, path=str(cmdline), present=["iommu=pt", "pcie_aspm=off"], record=str(record))
    assert (code, out["changed"]) == (0, False)
    code, out = run(capsys, path=str(cmdline), record=str(record), remove_recorded=True)
    assert (code, out["changed"], out["removed"]) == (0, True, ["pcie_aspm=off"])
    # iommu=pt was the node's own token: it stays.
    assert cmdline.read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert not record.exists()
    code, out = run(capsys, path=str(cmdline), record=str(record), remove_recorded=True)
    assert (code, out["changed"]) == (0, False)


def test_remove_recorded_needs_record(capsys, cmdline):
    code, out = run(capsys, path=str(cmdline), remove_recorded=True)
    assert code == 1
    assert out["msg"] == "remove_recorded is True but all of the following are missing: record"


def test_a_replaced_token_is_recorded_and_put_back_in_place(capsys, cmdline, tmp_path):
    record = tmp_path / "state" / "cmdline-added"
    cmdline.write_text("root=/dev/sda1 intel_iommu=on,igfx_off quiet\n")
    code, out = run(capsys, path=str(cmdline), present=["intel_iommu=on", "iommu=pt"], record=str(record))
    assert (code, out["removed"]) == (0, ["intel_iommu=on,igfx_off"])
    assert cmdline.read_text() == "root=/dev/sda1 intel_iommu=on quiet iommu=pt\n"
    assert record.read_text().splitlines()[2:] == ["intel_iommu=on iommu=pt", "restore intel_iommu=on,igfx_off"]
    code, out = run(capsys, path=str(cmdline), record=str(record), remove_recorded=True)
    assert code == 0 and out["changed"] is True
    assert cmdline.read_text() == "root=/dev/sda1 intel_iommu=on,igfx_off quiet\n"
    assert not record.exists()


def test_prune_takes_out_only_recorded_tokens_puts_back_what_they_replaced_and_updates_the_record(
        capsys, cmdline, tmp_path):
    record = tmp_path / "cmdline-added"
    cmdline.write_text("root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=soft quiet\n")
    run(capsys, path=str(cmdline), present=["iommu=pt", "pcie_acs_override=downstream"], record=str(record))
    assert cmdline.read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt quiet pcie_acs_override=downstream\n"
    # iommu=pt replaced the node's own iommu=soft: pruning it puts iommu=soft back in place.
    code, out = run(capsys, path=str(cmdline), record=str(record), prune=["iommu=pt", "quiet"], _ansible_diff=True)
    assert (code, out["changed"]) == (0, True)
    assert cmdline.read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=soft quiet pcie_acs_override=downstream\n"
    # quiet was the node's own (not recorded): untouched. The record keeps only what is still the role's.
    assert "iommu=pt" not in record.read_text() and "pcie_acs_override=downstream" in record.read_text()
    assert "restore" not in record.read_text()
    code, out = run(capsys, path=str(cmdline), record=str(record), prune=["iommu=pt"])
    assert (code, out["changed"]) == (0, False)
    # The last recorded token pruned: the record goes, as after remove_recorded.
    run(capsys, path=str(cmdline), record=str(record), prune=["pcie_acs_override=downstream"])
    assert cmdline.read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=soft quiet\n"
    assert not record.exists()


def test_prune_needs_a_record(capsys, cmdline):
    code, out = run(capsys, path=str(cmdline), prune=["iommu=pt"])
    assert code == 1 and "required by 'prune'" in out["msg"], out["msg"]
    assert cmdline.read_text() == LINE


def test_prune_of_a_token_already_gone_from_the_line_still_forgets_it(capsys, cmdline, tmp_path):
    record = tmp_path / "cmdline-added"
    run(capsys, path=str(cmdline), present=["iommu=pt"], record=str(record))
    cmdline.write_text(LINE)  # an administrator took it out by hand
    code, out = run(capsys, path=str(cmdline), record=str(record), prune=["iommu=pt"])
    assert (code, out["changed"]) == (0, True) and not record.exists() and cmdline.read_text() == LINE


@pytest.mark.parametrize("original", [
    "root=ZFS=rpool/ROOT/pve-1 boot=zfs\r\n",  # CRLF
    "root=ZFS=rpool/ROOT/pve-1\tboot=zfs  quiet",  # tabs, two blanks, no final newline
    'root=ZFS=rpool/ROOT/pve-1 dyndbg="file x.c  +p" iommu=soft quiet iommu=nopt \n',  # quoted value, the key twice
])
def test_the_file_comes_back_byte_for_byte(capsys, cmdline, tmp_path, original):
    cmdline.write_bytes(original.encode())
    record = tmp_path / "state" / "cmdline-added"
    code, out = run(capsys, path=str(cmdline), present=["intel_iommu=on", "iommu=pt"], record=str(record))
    assert (code, out["changed"]) == (0, True)
    written = cmdline.read_bytes().decode()
    assert written.endswith(original[len(original.rstrip("\r\n \t")):])  # the line's own end is kept
    code, out = run(capsys, path=str(cmdline), record=str(record), remove_recorded=True)
    assert (code, out["changed"]) == (0, True)
    assert cmdline.read_bytes() == original.encode()
    assert not record.exists()


def test_a_quote_never_closed_is_refused_before_writing(capsys, cmdline):
    cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 dyndbg="file x.c\n')
    code, out = run(capsys, path=str(cmdline), present=["iommu=pt"])
    assert code == 1
    assert out["msg"] == ("kernel_cmdline: %s: its command line has a double quote that is never closed "
                          "('\"file x.c') - the kernel reads everything after it as one value; close or remove it "
                          "by hand" % cmdline)
    assert cmdline.read_text() == 'root=ZFS=rpool/ROOT/pve-1 dyndbg="file x.c\n'
