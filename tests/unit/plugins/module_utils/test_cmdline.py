"""Token edits of /etc/kernel/cmdline."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import (
    edit,
    remove_recorded,
    replaced,
    tokens,
    validate,
)

ZFS = "root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet\n"


def test_appends_missing_tokens_and_keeps_foreign_ones_in_order():
    result = edit(ZFS, ["intel_iommu=on", "iommu=pt"], [])
    assert result["content"] == "root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet intel_iommu=on iommu=pt\n"
    assert (result["added"], result["removed"]) == (["intel_iommu=on", "iommu=pt"], [])
    assert result["before"] == "root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet"


def test_second_run_changes_nothing():
    once = edit(ZFS, ["iommu=pt"], [])["content"]
    again = edit(once, ["iommu=pt"], [])
    assert again["content"] == once
    assert (again["added"], again["removed"]) == ([], [])


def test_same_key_is_replaced_in_place_everywhere_it_is():
    # Each token with the key gets the wanted one in its place: the kernel takes the last, and the rollback puts
    # every original back where it was (below).
    result = edit("root=/dev/sda1 iommu=soft quiet iommu=nopt\n", ["iommu=pt"], [])
    assert result["content"] == "root=/dev/sda1 iommu=pt quiet iommu=pt\n"
    assert result["removed"] == ["iommu=soft", "iommu=nopt"]
    assert result["added"] == ["iommu=pt"]


def test_the_originals_of_a_key_go_back_each_in_its_place():
    original = "root=/dev/sda1 iommu=soft quiet\tiommu=nopt  \n"
    result = edit(original, ["iommu=pt"], [])
    assert result["content"] == "root=/dev/sda1 iommu=pt quiet\tiommu=pt  \n"
    assert remove_recorded(result["content"], ["iommu=pt"], replaced(result, []))["content"] == original


def test_absent_removes_exact_tokens_only():
    result = edit("root=/dev/sda1 iommu=pt iommu=ptx quiet\n", [], ["iommu=pt", "nosuch"])
    assert result["content"] == "root=/dev/sda1 iommu=ptx quiet\n"
    assert result["removed"] == ["iommu=pt"]


def test_lines_after_the_first_are_kept():
    result = edit("root=/dev/sda1\n# a note\n", ["iommu=pt"], [])
    assert result["content"] == "root=/dev/sda1 iommu=pt\n# a note\n"


def test_the_line_end_spacing_and_quotes_are_kept():
    # No final newline stays none (proxmox-boot-tool read the file so before); CRLF stays CRLF; blanks between
    # and after the tokens stay; a quoted value with blanks is one token, as the kernel reads it.
    assert edit("root=/dev/sda1", ["iommu=pt"], [])["content"] == "root=/dev/sda1 iommu=pt"
    assert edit("", ["iommu=pt"], [])["content"] == "iommu=pt"
    assert edit("root=/dev/sda1 quiet\r\n", ["iommu=pt"], [])["content"] == "root=/dev/sda1 quiet iommu=pt\r\n"
    assert edit("root=/dev/sda1\t\tquiet  \n", ["iommu=pt"], ["quiet"])["content"] == "root=/dev/sda1 iommu=pt  \n"
    quoted = 'root=/dev/sda1 dyndbg="file x.c +p" iommu=soft\n'
    assert tokens(quoted) == ["root=/dev/sda1", 'dyndbg="file x.c +p"', "iommu=soft"]
    assert edit(quoted, ["iommu=pt"], [])["content"] == 'root=/dev/sda1 dyndbg="file x.c +p" iommu=pt\n'
    assert edit('root=/dev/sda1 "iommu=soft x"\n', ["iommu=pt"], [])["content"] == "root=/dev/sda1 iommu=pt\n"


@pytest.mark.parametrize(("present", "absent", "message"), [
    (["two words"], [], "present: 'two words' is not a single kernel command line token"),
    ([""], [], "present: '' is not a single kernel command line token"),
    (["root=/dev/sdb1"], [], "present: 'root=/dev/sdb1' would change the root file system token, which is never"),
    ([], ["root=ZFS=rpool/ROOT/pve-1"], "absent: 'root=ZFS=rpool/ROOT/pve-1' would change the root file system token"),
    (["iommu=pt"], ["iommu=pt"], "present and absent both name iommu=pt"),
    (["iommu=pt", "iommu=soft"], [], "present sets iommu more than once"),
])
def test_validation_names_option_and_value(present, absent, message):
    problems = validate(present, absent)
    assert len(problems) == 1
    assert problems[0].startswith(message)


def test_valid_request_has_no_problems():
    assert validate(["intel_iommu=on", "iommu=pt", "pcie_acs_override=downstream"], ["video=efifb:off"]) == []
