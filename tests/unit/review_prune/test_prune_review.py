"""Adversarial review of ca83383 (systemd-boot prune of tokens the role added and no longer wants).

Each test states what a Proxmox administrator should get; each failed before its fix. A fourth finding - the reboot
reason for a pruned token is said only by the run that takes it out, not by later runs while the running kernel
still has it - is a documented limitation (the changelog fragment systemd-boot-prune.yml), not tested here."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    CMDLINE_RECORD,
    STATE_RECORD,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes
from ansible_collections.vfio.proxmox.plugins.modules import kernel_cmdline
from tests.unit.module_args import patch_module_args
from tests.unit.plugins.module_utils.test_desired import facts, owned, record, rendered_for, text_file

ROOT = "root=ZFS=rpool/ROOT/pve-1 boot=zfs"
GPU = {"address": "0000:06:00.0"}
HEADER = "# Ansible managed\n# vfio.proxmox: owned\n"


def run_module(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        kernel_cmdline.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def apply(capsys, tmp_path, plan, line, record_body):
    """What configure.yml's kernel_cmdline task does with this plan on a node with this line and record."""
    path, rec = tmp_path / "cmdline", tmp_path / "cmdline-added"
    path.write_text(line)
    rec.write_text(HEADER + record_body)
    code, out = run_module(capsys, path=str(path), record=str(rec), present=plan["cmdline"]["present"],
                           prune=plan["cmdline"]["prune"], remove_recorded=plan["cmdline"]["remove_recorded"])
    assert code == 0, out
    return path.read_text(), rec.read_text() if rec.exists() else None


def seen_for(line, record_body):
    seen = {STATE_RECORD: record(), "/etc/kernel/cmdline": text_file(line)}
    if record_body is not None:
        seen[CMDLINE_RECORD] = owned(record_body)
    return seen


def running(node_line):
    return lambda p: p.update(cmdline="initrd=\\EFI\\proxmox\\6.14.8-2-pve\\initrd.img-6.14.8-2-pve " + node_line)


# --- F1: narrowing a comma-valued extra token drops it from the next boot -----------------------------------

def test_narrowing_a_comma_valued_extra_token_keeps_the_narrowed_token_on_the_line(fake_node, capsys, tmp_path):
    """extra_cmdline pcie_acs_override=downstream,multifunction -> pcie_acs_override=downstream. The planner finds
    the new token 'satisfied' by the old one still on the line, so asks for nothing to add, while it prunes the
    old one: the file ends up with no pcie_acs_override at all, and the refreshed boot entry boots without it."""
    line = "%s quiet pcie_acs_override=downstream,multifunction\n" % ROOT
    body = "pcie_acs_override=downstream,multifunction\n"
    node = fake_node("amd-zfs-uefi", mutate=running(line.strip()))
    seen = seen_for(line, body)
    plan = make_plan(facts(node), {"devices": [GPU], "iommu_pt": False,
                                   "extra_cmdline": ["pcie_acs_override=downstream"]}, seen)
    assert plan["errors"] == [] and plan["boot_loader"] == "systemd-boot"
    after, _rec = apply(capsys, tmp_path, plan, line, body)
    assert "pcie_acs_override=downstream" in after.split(), after


def test_narrowing_a_comma_valued_extra_token_converges_in_one_run(fake_node, capsys, tmp_path):
    """Idempotence: after the run applied what the plan asked, the next plan must change nothing."""
    line = "%s quiet pcie_acs_override=downstream,multifunction\n" % ROOT
    body = "pcie_acs_override=downstream,multifunction\n"
    node = fake_node("amd-zfs-uefi", mutate=running(line.strip()))
    wanted = {"devices": [GPU], "iommu_pt": False, "extra_cmdline": ["pcie_acs_override=downstream"]}
    plan = make_plan(facts(node), wanted, seen_for(line, body))
    after, rec = apply(capsys, tmp_path, plan, line, body)
    seen2 = seen_for(after, rec[len(HEADER):] if rec and rec.startswith(HEADER) else rec)
    if rec is None:
        seen2.pop(CMDLINE_RECORD, None)
    else:
        seen2[CMDLINE_RECORD] = text_file(rec)
    again = make_plan(facts(node), wanted, seen2)
    assert changes(again, seen2, rendered_for(again))["cmdline"] is False, again["cmdline"]


# --- F2: the restored original overwrites a same-key token the administrator set by hand ----------------------

def test_prune_never_rewrites_a_token_the_record_does_not_list(capsys, tmp_path):
    """The role once replaced iommu=soft by iommu=pt (record: iommu=pt, restore iommu=soft). The administrator
    later edited /etc/kernel/cmdline by hand to iommu=nopt and set passthrough_iommu_pt: false. The module doc
    says 'A token the record does not list is the node's own and stays' - but the restore replaces any token
    with the key iommu, so the administrator's iommu=nopt becomes iommu=soft (swiotlb, no IOMMU translation)."""
    path, rec = tmp_path / "cmdline", tmp_path / "cmdline-added"
    path.write_text("%s iommu=nopt\n" % ROOT)
    rec.write_text(HEADER + "iommu=pt\nrestore iommu=soft\n")
    code, out = run_module(capsys, path=str(path), record=str(rec), present=[], prune=["iommu=pt"])
    assert code == 0
    assert path.read_text() == "%s iommu=nopt\n" % ROOT


# --- F3: pruning intel_iommu=on after a 6.8+ upgrade puts intel_iommu=off back ------------------------------

def test_dropping_intel_iommu_on_after_a_kernel_upgrade_does_not_switch_the_iommu_off(fake_node, capsys, tmp_path):
    """Intel node on systemd-boot, first configured on a 6.5 kernel: the role replaced the line's intel_iommu=off
    with intel_iommu=on (restore intel_iommu=off). The old kernel is removed, only 6.14 is left: the plan no longer
    wants intel_iommu=on (on by default from 6.8) and prunes it - and the prune puts intel_iommu=off back, so the
    IOMMU is off after the reboot the run asks for, and every passthrough VM fails to start. The plan raises no
    error or warning about it."""
    line = "%s intel_iommu=on iommu=pt\n" % ROOT
    body = "intel_iommu=on\nrestore intel_iommu=off\n"
    node = fake_node("amd-zfs-uefi", mutate=lambda p: (p.update(cpu="intel"), running(line.strip())(p)))
    plan = make_plan(facts(node), {"devices": [GPU]}, seen_for(line, body))
    assert plan["errors"] == [] and "intel_iommu=on" not in plan["cmdline_tokens"]
    after, _rec = apply(capsys, tmp_path, plan, line, body)
    assert "intel_iommu=off" not in after.split() or plan["errors"] or any(
        "intel_iommu=off" in w for w in plan["warnings"]), after
