"""Adversarial review of 37a6a12 (the /etc/kernel/cmdline editor rewritten to give the file back byte for byte).

Each test states what a Proxmox administrator should get and fails on 37a6a12. The kernel facts used:
- kernel/params.c parse_args() + init/main.c obsolete_checksetup(): every occurrence of a parameter is handed to
  its setup function in line order, so for intel_iommu= (intel_iommu_setup: "on" clears dmar_disabled, "off"
  sets it) and iommu= (pt / nopt) the LAST occurrence decides;
- parameq()/parameqn(): "-" and "_" in a parameter name are the same (intel-iommu=off is intel_iommu=off);
- lib/cmdline.c next_arg(): a token quoted as a whole ("intel_iommu=off") is that parameter, quotes dropped.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    CMDLINE_RECORD,
    KERNEL_CMDLINE,
    STATE_RECORD,
    parse_record,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.features._adopt import copy_of, give_back
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import edit, overridden, tokens
from tests.unit.plugins.module_utils.test_desired import facts, owned, record, text_file
from tests.unit.review_prune.test_prune_review import GPU, HEADER, ROOT, run_module


def apply(capsys, tmp_path, plan, line, record_body):
    """What roles/passthrough/tasks/configure.yml's kernel_cmdline task does with this plan."""
    path, rec = tmp_path / "cmdline", tmp_path / "cmdline-added"
    path.write_bytes(line.encode())
    if record_body is not None:
        rec.write_text(HEADER + record_body)
    code, out = run_module(capsys, path=str(path), record=str(rec), present=plan["cmdline"]["present"],
                           prune=plan["cmdline"]["prune"], remove_recorded=plan["cmdline"]["remove_recorded"])
    assert code == 0, out
    return path.read_bytes().decode()


def seen_for(line, record_body):
    seen = {STATE_RECORD: record(), KERNEL_CMDLINE: text_file(line)}
    if record_body is not None:
        seen[CMDLINE_RECORD] = owned(record_body)
    return seen


def intel_node(fake_node, line, kernel):
    """An Intel node booted with systemd-boot from /etc/kernel/cmdline, running `kernel` with `line`."""
    def mutate(profile):
        profile.update(cpu="intel", kernel=kernel,
                       cmdline="initrd=\\EFI\\proxmox\\%s\\initrd.img-%s %s" % (kernel, kernel, line.strip()))
    return fake_node("amd-zfs-uefi", mutate=mutate)


def kernel_keeps(line: str, key: str) -> str | None:
    """The value the kernel ends up with for `key` (last occurrence wins, "-" == "_", a whole-token quote dropped)."""
    value = None
    for token in tokens(line):
        bare = token[1:-1] if token.startswith('"') and token.endswith('"') else token
        name, sep, val = bare.partition("=")
        if sep and name.replace("-", "_") == key:
            value = val
    return value


# --- 1: a later intel_iommu=off is left behind the role's intel_iommu=on ----------------------------------------

def test_a_later_token_of_the_same_key_cannot_outvote_the_roles_token(fake_node, capsys, tmp_path):
    """Promise 3: "a wanted key=value replaces every token with the same key in place". An Intel node on a 6.5
    kernel has `intel_iommu=on ... intel_iommu=off` (the admin appended =off once to debug). The plan finds
    intel_iommu=on 'satisfied', kernel_cmdline skips a wanted token that is already on the line, and the
    intel_iommu=off after it stays: the kernel keeps the last one, the IOMMU stays off, every VM with a
    hostpci device fails to start - and the role reports nothing to change and no reboot."""
    line = "%s intel_iommu=on iommu=pt quiet intel_iommu=off\n" % ROOT
    node = intel_node(fake_node, line, "6.5.13-6-pve")
    plan = make_plan(facts(node), {"devices": [GPU]}, seen_for(line, None))
    assert "intel_iommu=on" in plan["cmdline_tokens"]
    if plan["errors"]:  # refusing the run, naming the contradicting token, would protect the admin as well
        assert any("intel_iommu=off" in e for e in plan["errors"]), plan["errors"]
        return
    after = apply(capsys, tmp_path, plan, line, None)
    assert kernel_keeps(after, "intel_iommu") == "on", after


def test_the_module_refuses_a_wanted_token_a_later_one_of_its_key_undoes(capsys, tmp_path):
    """The same at the module (public API): present [iommu=pt] on `iommu=pt ... iommu=nopt` changed nothing,
    so the kernel ran with iommu=nopt (translated DMA) while the task said ok. Now refused, naming both (which of
    the two the administrator meant is theirs to say), before anything is written."""
    path = tmp_path / "cmdline"
    path.write_text("%s iommu=pt quiet iommu=nopt\n" % ROOT)
    code, out = run_module(capsys, path=str(path), present=["iommu=pt"], record=str(tmp_path / "rec"))
    assert code == 1, out
    assert out["msg"] == ("kernel_cmdline: %s holds iommu=pt and, after it, iommu=nopt - the kernel applies both in "
                          "that order, so the later one may undo it: remove one of them by hand" % path)
    assert path.read_text() == "%s iommu=pt quiet iommu=nopt\n" % ROOT and not (tmp_path / "rec").exists()


NODE_TOKENS = st.sampled_from(["quiet", "boot=zfs", "iommu=pt", "iommu=nopt", "iommu=soft", "intel_iommu=on",
                               "intel_iommu=off", "intel-iommu=off", '"intel_iommu=off"', "intel_iommu=on,igfx_off",
                               "kvm.ignore_msrs=0", "kvm.ignore-msrs=0"])
ROLE_TOKENS = st.lists(st.sampled_from(["intel_iommu=on", "iommu=pt", "kvm.ignore_msrs=1"]), min_size=1,
                       unique=True)


@settings(max_examples=300, deadline=None, database=None)
@given(own=st.lists(NODE_TOKENS, max_size=6), wanted=ROLE_TOKENS)
def test_after_an_edit_the_kernel_gets_every_wanted_value(own, wanted):
    """Property of promise 3 as the kernel reads the result: for every wanted key=value, the value the kernel
    keeps (last occurrence, "-" == "_", quotes dropped) is the wanted one."""
    line = " ".join([ROOT] + own) + "\n"
    after = edit(line, wanted, [])["content"]
    for token in wanted:
        key, _sep, value = token.partition("=")
        # Or the line already holds the token with a later one of its key after it: the module and the planner
        # refuse that line (overridden() names the later token).
        assert kernel_keeps(after, key) == value or overridden(line, token), (line, after)


# --- 2: a quoted or dashed intel_iommu=off defeats the 6.8 prune guard --------------------------------------------

@pytest.mark.parametrize("before", [
    # 37a6a12's token_key reads "intel_iommu=off" as key intel_iommu: the role replaces it and records it - but
    # switches_iommu_off() keeps the quote in the key, so the guard does not see an IOMMU switch-off to put back.
    '%s "intel_iommu=off"\n' % ROOT,
    # intel-iommu=off is intel_iommu=off to the kernel (parameqn), not to same_key(): the role appends its
    # intel_iommu=on after it (nothing recorded), and the prune takes that out again.
    "%s intel-iommu=off\n" % ROOT,
], ids=["quoted-off", "dashed-off"])
def test_pruning_intel_iommu_on_after_a_68_upgrade_never_leaves_the_iommu_off(fake_node, capsys, tmp_path, before):
    """The node was set up on a 6.5 kernel (kernel_cmdline: present intel_iommu=on, iommu=pt, with its record).
    Later only 6.14 is left: the plan no longer wants intel_iommu=on and prunes it. The guard from the prune
    review (F3) keeps it when the original it replaced is intel_iommu=off - compared by exact spelling only. With
    the admin's =off quoted or dashed, the IOMMU is off after the reboot: every hostpci VM fails to start."""
    first = tmp_path / "first"
    first.mkdir()
    path, rec = first / "cmdline", first / "rec"
    path.write_text(before)
    assert run_module(capsys, path=str(path), present=["intel_iommu=on", "iommu=pt"], record=str(rec))[0] == 0
    line, body = path.read_text(), rec.read_text().split("\n", 2)[2]  # the record without its two header lines
    assert kernel_keeps(line, "intel_iommu") == "on"  # on 6.5 the role's run switched the IOMMU on
    node = intel_node(fake_node, line, "6.14.8-2-pve")
    plan = make_plan(facts(node), {"devices": [GPU]}, seen_for(line, body))
    assert "intel_iommu=on" not in plan["cmdline_tokens"]
    after = apply(capsys, tmp_path, plan, line, body)
    assert kernel_keeps(after, "intel_iommu") != "off" or plan["errors"] or any(
        "intel" in w and "off" in w for w in plan["warnings"]), (after, plan["cmdline"])


# --- 3: a record written by the editor before 37a6a12 --------------------------------------------------------------

def test_a_rollback_from_an_old_record_puts_back_every_replaced_original(capsys, tmp_path):
    """Before 37a6a12 a wanted key=value replaced the FIRST token of its key and deleted the others, and the record
    got one `restore` line per original. Node before the role (extra_cmdline wanted
    pcie_acs_override=downstream,multifunction):
        root=... pcie_acs_override=downstream quiet pcie_acs_override=multifunction
    the old editor wrote `root=... pcie_acs_override=downstream,multifunction quiet` and recorded both originals.
    After upgrading the collection, the rollback puts back only the first original: the admin's own
    pcie_acs_override=multifunction is gone, IOMMU groups merge again, and the VMs the admin set up before the
    role no longer start ("group is not viable"). The old rollback at least kept the last, effective one."""
    old_line = "%s pcie_acs_override=downstream,multifunction quiet\n" % ROOT
    path, rec = tmp_path / "cmdline", tmp_path / "cmdline-added"
    path.write_text(old_line)
    rec.write_text("# Ansible managed: written by vfio.proxmox.kernel_cmdline\n"
                   "# vfio.proxmox: kernel command line tokens added by the role (removed again on state=absent)\n"
                   "pcie_acs_override=downstream,multifunction\n"
                   "restore pcie_acs_override=downstream\nrestore pcie_acs_override=multifunction\n")
    code, out = run_module(capsys, path=str(path), record=str(rec), remove_recorded=True)
    assert code == 0, out
    after = tokens(path.read_text())
    assert "pcie_acs_override=downstream" in after and "pcie_acs_override=multifunction" in after, after


# --- 4: the record format loses or splits what the new tokenizer keeps in a token ----------------------------------

@pytest.mark.parametrize("original", [
    # A no-break space pasted from a web page after a value: kernel_arg_spans keeps it in the token, the record
    # keeps it, parse_record's .strip() drops it - the rollback writes `iommu=soft` back.
    "%s iommu=soft\u00a0 quiet\n" % ROOT,
    # U+0085 (NEL, what a mis-decoded cp1252 "..." becomes) inside a token: parse_record's splitlines() cuts the
    # restore line there and reads the rest (`boot=zfs`) as a token the ROLE added - the rollback deletes the
    # node's own boot=zfs.
    '%s iommu="soft"\u0085boot=zfs quiet\n' % ROOT,
    # A form feed inside quotes (one token for the kernel): the record splits, the rollback crashes (IndexError)
    # on every run - the role can never be rolled back until the record is repaired by hand.
    '%s "iommu=soft\fx" iommu=soft\n' % ROOT,
], ids=["nbsp-after-value", "nel-inside-token", "formfeed-inside-quotes"])
def test_the_roles_tokens_come_out_byte_for_byte_whatever_the_node_tokens_hold(capsys, tmp_path, original):
    """Promise 2: present + record, then remove_recorded, gives the file back byte for byte for any file text."""
    path, rec = tmp_path / "cmdline", tmp_path / "cmdline-added"
    path.write_bytes(original.encode())
    code, out = run_module(capsys, path=str(path), present=["intel_iommu=on", "iommu=pt"], record=str(rec))
    assert (code, out["changed"]) == (0, True), out
    try:
        code, out = run_module(capsys, path=str(path), record=str(rec), remove_recorded=True)
    except Exception as exc:  # noqa: BLE001 - a traceback is the finding
        pytest.fail("the rollback crashed: %r" % exc)
    assert code == 0, out
    assert path.read_bytes().decode() == original


def test_an_adopted_cmdline_is_given_back_when_a_node_token_ends_in_a_no_break_space(capsys, tmp_path):
    """passthrough_adopt on systemd-boot: adoption took the hand-made vfio-pci.ids= out of the line (the manifest
    keeps the checksum of that text), then kernel_cmdline replaced `iommu=soft\u00a0` by iommu=pt. On rollback
    give_back() takes the role's tokens out again with the record - which lost the no-break space - so the text
    does not match the manifest and the whole rollback is refused ("changed since it was adopted")."""
    original = "%s vfio-pci.ids=10de:1b80 iommu=soft\u00a0\n" % ROOT
    adopted = "%s iommu=soft\u00a0\n" % ROOT
    path, rec = tmp_path / "cmdline", tmp_path / "cmdline-added"
    path.write_bytes(adopted.encode())
    assert run_module(capsys, path=str(path), present=["iommu=pt"], record=str(rec))[0] == 0
    current = path.read_bytes().decode()

    def state(text):
        return {"exists": True, "type": "file", "content": text,
                "checksum": hashlib.sha1(text.encode()).hexdigest()}

    manifest = {"files": {KERNEL_CMDLINE: {"copy": copy_of(KERNEL_CMDLINE), "original": state(original)["checksum"],
                                           "adopted": state(adopted)["checksum"], "rebuild": "refresh"}},
                "targets": [], "lines": [], "selection": []}
    files = {KERNEL_CMDLINE: state(current), copy_of(KERNEL_CMDLINE): state(original)}
    restores, errors = give_back(manifest, files, parse_record(rec.read_text()))
    assert errors == [] and [r["path"] for r in restores] == [KERNEL_CMDLINE], errors


# --- 5: the module writes a first line it then refuses to edit -------------------------------------------------------

def test_the_module_never_writes_a_quote_it_would_refuse(capsys, tmp_path):
    """Promise 4 refuses a first line with a quote never closed. validate() only refuses blanks and root=, so a
    typo in a play (present: ['dyndbg="+p']) is written as is; from then on every edit of the line is refused -
    the module's own rollback (remove_recorded) included, so the token can never be taken out by the role."""
    path, rec = tmp_path / "cmdline", tmp_path / "cmdline-added"
    path.write_text("%s\n" % ROOT)
    code, out = run_module(capsys, path=str(path), present=['dyndbg="+p'], record=str(rec))
    if code != 0:  # refused before any write: what the promise asks
        assert path.read_text() == "%s\n" % ROOT
        return
    code, out = run_module(capsys, path=str(path), record=str(rec), remove_recorded=True)
    assert code == 0 and path.read_text() == "%s\n" % ROOT, out
