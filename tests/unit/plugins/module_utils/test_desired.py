"""The desired state and what a run changes: removal from records, reboots, pending rebuilds, backups, check mode."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    CMDLINE_RECORD,
    GRUB_DROPIN,
    INIT_TOP,
    MODPROBE,
    MODULES_LOAD,
    PENDING,
    STATE_RECORD,
    backup_path,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes, outcome, verify
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import watched_paths

PORT = {"address": "0000:02:00.0", "id": "8086:15f3"}


def facts(node, **kwargs):
    return gather(run=node.run, which=node.which, **node.roots, **kwargs)["ansible_facts"]


def text_file(content: str, mode: str = "0644") -> dict:
    return {"exists": True, "type": "file", "mode": mode, "uid": 0, "gid": 0, "content": content,
            "checksum": hashlib.sha1(content.encode()).hexdigest()}


def owned(content: str) -> dict:
    return text_file("# Ansible managed\n# vfio.proxmox: owned\n" + content)


def record(targets=(PORT,), **extra) -> dict:
    """state.json as the role writes it: JSON, its comment carrying the marker."""
    return text_file(json.dumps(dict({"_comment": "Ansible managed - vfio.proxmox: record", "selectors": {},
                                      "targets": list(targets), "created_dirs": []}, **extra)))


def rendered_for(plan: dict) -> list[str]:
    """Stand-in texts for the templates; only their count and order matter to changes()."""
    return ["rendered %s\n" % f["path"] for f in plan["files"] if f["template"]]


def test_watched_paths_cover_every_file_the_plan_reads():
    watched = watched_paths()
    for path in (STATE_RECORD, CMDLINE_RECORD, PENDING, GRUB_DROPIN, MODPROBE, "/etc/kernel/cmdline",
                 "/etc/default/grub", "/etc/initramfs-tools/modules"):
        assert path in watched["read"] and path in watched["paths"]


def test_rollback_with_an_empty_list_removes_what_the_records_name(fake_node):
    node = fake_node("guide-intel")
    seen = {STATE_RECORD: record(), MODPROBE: owned("options vfio-pci ids=8086:15f3\n"),
            GRUB_DROPIN: owned('GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} iommu=pt"\n'),
            "/etc/vfio-proxmox": {"exists": True, "type": "directory"}}
    plan = make_plan(facts(node), {"state": "absent", "devices": []}, seen)
    assert plan["errors"] == []
    assert plan["act"] is True and all(f["template"] is None for f in plan["files"])
    assert plan["bind_targets"] == [dict(PORT, state="absent")]  # released although nothing is selected
    change = changes(plan, seen, [])
    assert sorted(change["remove"]) == sorted([STATE_RECORD, MODPROBE, GRUB_DROPIN])
    assert change["rebuild"] == ["initramfs", "grub"]
    assert change["remove_state_dir"] is True
    # The running kernel lacks iommu=pt: taking it out needs no reboot.
    assert plan["reboot_for_cmdline"] is False


def test_rollback_reboots_only_for_a_removed_token_the_running_kernel_has(fake_node):
    running = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet iommu=pt"
    node = fake_node("guide-intel", mutate=lambda p: p.update(cmdline=running))
    dropin = owned('GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} iommu=pt"\n')
    seen = {STATE_RECORD: record(), GRUB_DROPIN: dropin}
    plan = make_plan(facts(node), {"state": "absent", "devices": []}, seen)
    assert (plan["reboot_for_cmdline"], plan["reboot_tokens"]) == (True, ["iommu=pt"])
    # The node's own /etc/default/grub also has iommu=pt: removing the drop-in takes nothing away.
    seen["/etc/default/grub"] = text_file('GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n')
    plan = make_plan(facts(node), {"state": "absent", "devices": []}, seen)
    assert (plan["reboot_for_cmdline"], plan["reboot_tokens"]) == (False, [])


def test_rollback_on_systemd_boot_removes_recorded_tokens_and_restores_replaced_ones(fake_node):
    node = fake_node("amd-zfs-uefi")
    seen = {STATE_RECORD: record(), CMDLINE_RECORD: owned("iommu=pt\nrestore iommu=soft\n"),
            "/etc/kernel/cmdline": text_file("root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n")}
    plan = make_plan(facts(node), {"state": "absent", "devices": []}, seen)
    assert plan["cmdline"] == {"present": [], "prune": [], "remove_recorded": True}
    assert "refresh" in changes(plan, seen, [])["rebuild"]


@pytest.mark.parametrize("wanted", [{"state": "absent", "devices": []},
                                    {"devices": [{"address": "0000:06:00.0"}], "iommu_pt": True}])
def test_a_command_line_with_a_quote_never_closed_is_refused_before_any_write(fake_node, wanted):
    """A token appended after `dyndbg="file x.c` would be part of that value: refused, in check mode too."""
    node = fake_node("amd-zfs-uefi")
    seen = {STATE_RECORD: record(), CMDLINE_RECORD: owned("iommu=pt\n"),
            "/etc/kernel/cmdline": text_file('root=ZFS=rpool/ROOT/pve-1 boot=zfs dyndbg="file x.c\n')}
    plan = make_plan(facts(node), wanted, seen)
    assert plan["errors"] == ["/etc/kernel/cmdline: its command line has a double quote that is never closed "
                              "('\"file x.c') - the kernel reads everything after it as one value; close or remove it "
                              "by hand"]


def test_a_wanted_token_undone_by_a_later_one_of_its_key_is_refused(fake_node):
    """`iommu=pt iommu=soft`: the token is there, so an edit leaves the line alone, but the kernel applies the later
    one after it. Refused, naming both; the same token last is fine."""
    node = fake_node("amd-zfs-uefi")
    wanted = {"devices": [{"address": "0000:06:00.0"}], "iommu_pt": True}
    seen = {"/etc/kernel/cmdline": text_file("root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt quiet iommu=soft\n")}
    plan = make_plan(facts(node), wanted, seen)
    assert plan["errors"] == ["/etc/kernel/cmdline holds iommu=pt and, after it, iommu=soft - the kernel applies both "
                              "in that order, so the later one may undo it: remove one of them by hand"]
    seen = {"/etc/kernel/cmdline": text_file("root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=soft quiet iommu=pt\n")}
    assert make_plan(facts(node), wanted, seen)["errors"] == []


def test_a_rollback_with_no_record_changes_nothing(fake_node):
    plan = make_plan(facts(fake_node("guide-intel")), {"state": "absent", "devices": []}, {})
    change = changes(plan, {}, [])
    assert change["any"] is False and plan["bind_targets"] == []


def test_a_pending_rebuild_runs_although_every_file_matches(fake_node):
    node = fake_node("guide-intel")
    plan = make_plan(facts(node), {"devices": [{"address": "0000:02:00.0"}]}, {})
    seen = {f["path"]: text_file(text, f["mode"]) for f, text in
            zip([f for f in plan["files"] if f["template"]], rendered_for(plan))}
    seen["/etc/initramfs-tools/modules"] = text_file("\n".join(
        ["# BEGIN vfio.proxmox: vfio modules for the initramfs", *plan["modules"],
         "# END vfio.proxmox: vfio modules for the initramfs"]) + "\n")
    for directory in plan["dirs"] + ["/etc/vfio-proxmox"]:
        seen[directory] = {"exists": True, "type": "directory"}
    assert changes(plan, seen, rendered_for(plan))["any"] is False
    seen[PENDING] = text_file("initramfs\ngrub\n")
    plan = make_plan(facts(node), {"devices": [{"address": "0000:02:00.0"}]}, seen)
    change = changes(plan, seen, rendered_for(plan))
    assert (change["write"], change["rebuild"]) == ([], ["initramfs", "grub"])


def test_a_changed_owned_file_rebuilds_only_what_it_feeds(fake_node):
    plan = make_plan(facts(fake_node("guide-intel")), {"devices": [{"address": "0000:02:00.0"}]}, {})
    change = changes(plan, {}, rendered_for(plan))
    assert set(change["write"]) == {f["path"] for f in plan["files"] if f["template"]}
    assert change["rebuild"] == ["initramfs", "grub"]
    assert "/etc/vfio-proxmox" in change["dirs"]  # the pending mark lives there


def test_a_foreign_file_at_an_owned_path_is_kept_aside_and_put_back(fake_node):
    node = fake_node("guide-intel")
    foreign = text_file("options vfio-pci disable_vga=1\n")
    plan = make_plan(facts(node), {"devices": [{"address": "0000:02:00.0"}]}, {MODPROBE: foreign})
    change = changes(plan, {MODPROBE: foreign}, rendered_for(plan))
    assert change["backup"] == [MODPROBE]
    assert plan["state_record"]["backups"] == {MODPROBE: MODPROBE + ".vfio-proxmox-backup"}
    # Later: the role's file is in place, the copy beside it, and the record names it.
    seen = {MODPROBE: owned("x"), MODPROBE + ".vfio-proxmox-backup": foreign,
            STATE_RECORD: record(backups={MODPROBE: MODPROBE + ".vfio-proxmox-backup"})}
    plan = make_plan(facts(node), {"devices": [{"address": "0000:02:00.0"}]}, seen)
    assert changes(plan, seen, rendered_for(plan))["backup"] == []  # never the role's own file over the copy
    plan = make_plan(facts(node), {"state": "absent", "devices": []}, seen)
    change = changes(plan, seen, [])
    assert change["restore"] == [{"path": MODPROBE, "backup": MODPROBE + ".vfio-proxmox-backup"}]


def test_every_kept_aside_file_has_a_name_the_tool_reading_its_directory_skips(fake_node):
    """kmod and systemd-modules-load read only *.conf, grub-mkconfig only *.cfg; initramfs-tools runs every
    executable in scripts/init-top whose name has only [[:alnum:]._-] (hook-functions set_initlist, initramfs-tools
    0.142 and 0.148): a script kept aside under such a name would still run at boot."""
    skipped = {MODPROBE: lambda n: not n.endswith(".conf"), MODULES_LOAD: lambda n: not n.endswith(".conf"),
               GRUB_DROPIN: lambda n: not n.endswith(".cfg"),
               INIT_TOP: lambda n: re.search(r"[^A-Za-z0-9._-]", n.rsplit("/", 1)[1]) is not None}
    for path, skips in skipped.items():
        assert skips(backup_path(path)), backup_path(path)
    # The planner keeps a foreign init-top script aside under that name (one of two identical ports: address
    # binding), and puts it back from there - or from where an earlier release kept it.
    node = fake_node("dual-port-igb")
    foreign = text_file("#!/bin/sh\necho the administrator's own\n", mode="0755")
    plan = make_plan(facts(node), {"devices": [{"address": "0000:01:00.1"}]}, {INIT_TOP: foreign})
    assert plan["errors"] == [] and plan["state_record"]["backups"] == {INIT_TOP: INIT_TOP + ".vfio-proxmox-backup~"}
    for kept in (INIT_TOP + ".vfio-proxmox-backup~", INIT_TOP + ".vfio-proxmox-backup"):
        seen = {INIT_TOP: owned("x"), kept: foreign, STATE_RECORD: record(backups={INIT_TOP: kept})}
        plan = make_plan(facts(node), {"state": "absent", "devices": []}, seen)
        assert plan["errors"] == [] and changes(plan, seen, [])["restore"] == [{"path": INIT_TOP, "backup": kept}]


def test_directories_the_role_created_are_removed_on_rollback(fake_node):
    node = fake_node("guide-intel")
    plan = make_plan(facts(node), {"devices": [{"address": "0000:02:00.0"}]}, {})
    assert "/etc/default/grub.d" in plan["created_dirs"]
    seen = {STATE_RECORD: record(created_dirs=plan["created_dirs"]),
            "/etc/default/grub.d": {"exists": True, "type": "directory"}}
    plan = make_plan(facts(node), {"state": "absent", "devices": []}, seen)
    assert changes(plan, seen, [])["remove_dirs"] == ["/etc/default/grub.d"]


def test_an_unreadable_record_is_a_refusal(fake_node):
    seen = {STATE_RECORD: text_file("{not json")}
    plan = make_plan(facts(fake_node("guide-intel")), {"state": "absent", "devices": []}, seen)
    assert any("state.json is not valid JSON" in e for e in plan["errors"])


def test_check_mode_predicts_the_live_binding_of_the_real_run(fake_node):
    node = fake_node("dual-port-igb")
    plan = make_plan(facts(node), {"devices": [{"interface": "enp1s0f1"}]}, {})
    target = plan["bind_targets"][0]["address"]
    predicted = outcome(plan, [{"address": target, "status": "would_bind", "driver": "igb"}])
    real = outcome(plan, [{"address": target, "status": "bound", "driver": "vfio-pci"}])
    assert predicted == real
    assert predicted["bound"][target] == "vfio-pci" and predicted["moved_live"] is True
    # Without live binding the device waits for the reboot.
    assert "binding: %s not on vfio-pci yet" % target in outcome(plan, None)["reboot_reasons"]


def test_verify_names_a_group_member_left_on_its_driver(fake_node):
    node = fake_node("chipset-group")
    found = facts(node)
    nic = next(d for d in found["vfio_pci_devices"] if d["class"].startswith("02") and d["netdevs"]
               and not d["netdevs"][0].get("management"))
    nic_dev = dict(nic, driver="vfio-pci")
    found = dict(found, vfio_pci_devices=[nic_dev if d["address"] == nic["address"] else d
                                          for d in found["vfio_pci_devices"]])
    plan = {"cmdline_tokens": [], "targets": [{"address": nic["address"], "id": "x"}]}
    problems = verify(plan, found)
    assert any("IOMMU group %s is not viable" % nic["iommu_group"] in p for p in problems)


@pytest.mark.parametrize("path, state, message", [
    (MODPROBE, {"exists": True, "type": "link"}, "%s is a link, not a file" % MODPROBE),
    (MODPROBE, {"exists": True, "type": "directory"}, "%s is a directory, not a file" % MODPROBE),
    ("/etc/vfio-proxmox", {"exists": True, "type": "file"}, "/etc/vfio-proxmox is a file, not a directory"),
])
def test_something_else_at_an_owned_path_is_refused_before_any_write(fake_node, path, state, message):
    plan = make_plan(facts(fake_node("guide-intel")), {"devices": [{"address": "0000:02:00.0"}]}, {path: state})
    assert any(e.startswith(message) for e in plan["errors"]), plan["errors"]


def on_vfio(*addresses):
    def mutate(profile):
        for dev in profile["devices"]:
            if dev["address"] in addresses:
                dev["driver"] = "vfio-pci"
                dev["netdevs"] = []
    return mutate


def test_a_device_no_longer_selected_is_released_and_the_selected_one_bound(fake_node):
    node = fake_node("dual-port-igb", mutate=on_vfio("0000:01:00.1"))
    previous = {"address": "0000:01:00.1", "id": "8086:1521"}
    found = facts(node)
    seen = {STATE_RECORD: record(targets=[previous])}
    plan = make_plan(found, {"devices": [{"address": "0000:01:00.0", "force": True}]}, seen)
    assert plan["bind_targets"] == [{"address": "0000:01:00.0", "id": "8086:1521", "state": "present"},
                                    dict(previous, state="absent")]
    assert plan["bind_live"] is True
    predicted = outcome(plan, [{"address": "0000:01:00.0", "status": "would_bind", "driver": "igb"},
                               {"address": "0000:01:00.1", "status": "would_release", "driver": "vfio-pci"}])
    assert predicted["bound"] == {"0000:01:00.0": "vfio-pci", "0000:01:00.1": None}
    assert not [r for r in predicted["reboot_reasons"] if r.startswith(("binding", "release"))]
    # A release that did not happen keeps the reboot required, and says why.
    stuck = outcome(plan, [{"address": "0000:01:00.1", "status": "in_use", "driver": "vfio-pci"}])
    assert "release: 0000:01:00.1 still on vfio-pci" in stuck["reboot_reasons"]


def test_releasing_a_device_a_running_vm_holds_is_refused(fake_node):
    node = fake_node("dual-port-igb", mutate=on_vfio("0000:01:00.1"))
    found = facts(node)
    group = next(d["iommu_group"] for d in found["vfio_pci_devices"] if d["address"] == "0000:01:00.1")
    found["vfio_host"]["vfio_users"] = {group: ["4242 (/usr/bin/kvm -id 101)"]}
    seen = {STATE_RECORD: record(targets=[{"address": "0000:01:00.1", "id": "8086:1521"}])}
    plan = make_plan(found, {"state": "absent", "devices": []}, seen)
    assert plan["errors"] == [
        "0000:01:00.1 (8086:1521) is no longer selected, but IOMMU group %s is in use by 4242 (/usr/bin/kvm -id 101): "
        "releasing it now would take it from a running VM - stop that VM first, or set passthrough_bind_now: false "
        "to give it back at the next boot" % group]
    assert make_plan(found, {"state": "absent", "devices": [], "bind_now": False}, seen)["errors"] == []


def test_releasing_is_refused_when_who_holds_the_group_cannot_be_known(fake_node):
    node = fake_node("dual-port-igb", mutate=on_vfio("0000:01:00.1"))
    found = facts(node)
    group = next(d["iommu_group"] for d in found["vfio_pci_devices"] if d["address"] == "0000:01:00.1")
    found["vfio_host"].update(vfio_users=None, vfio_users_error="/proc cannot be read (Permission denied)")
    seen = {STATE_RECORD: record(targets=[{"address": "0000:01:00.1", "id": "8086:1521"}])}
    plan = make_plan(found, {"state": "absent", "devices": []}, seen)
    assert plan["errors"] == [
        "0000:01:00.1 (8086:1521) is no longer selected, but whether a running VM holds IOMMU group %s cannot be "
        "known: /proc cannot be read (Permission denied) - releasing it now could take it from that VM; set "
        "passthrough_bind_now: false to give it back at the next boot" % group]
    assert make_plan(found, {"state": "absent", "devices": [], "bind_now": False}, seen)["errors"] == []


def test_a_device_outside_every_iommu_group_is_refused_while_the_iommu_is_on(fake_node):
    found = facts(fake_node("guide-intel"))
    for dev in found["vfio_pci_devices"]:
        if dev["address"] == "0000:02:00.0":
            dev["iommu_group"] = None
    plan = make_plan(found, {"devices": [{"address": "0000:02:00.0"}]})
    assert "passthrough_devices[0] (0000:02:00.0): has no IOMMU group although the IOMMU is active" in plan["errors"][0]


def test_a_token_no_longer_wanted_on_systemd_boot_is_taken_out_of_the_command_line(fake_node):
    """iommu=pt switched off (or a token dropped from passthrough_extra_cmdline) on a systemd-boot node: the role
    added it to /etc/kernel/cmdline and records so, so it takes it out again - as the GRUB drop-in loses it - and
    says the running kernel keeps it until a reboot. A token it did not add is never touched."""
    running = "initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt"
    node = fake_node("amd-zfs-uefi", mutate=lambda p: p.update(cmdline=running))
    seen = {STATE_RECORD: record(), CMDLINE_RECORD: owned("iommu=pt pcie_acs_override=downstream\n"),
            "/etc/kernel/cmdline": text_file("root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet iommu=pt "
                                             "pcie_acs_override=downstream\n")}
    wanted = {"devices": [{"address": "0000:06:00.0"}], "iommu_pt": False, "extra_cmdline": []}
    plan = make_plan(facts(node), wanted, seen)
    assert plan["errors"] == [] and plan["boot_loader"] == "systemd-boot"
    assert plan["cmdline"]["prune"] == ["iommu=pt", "pcie_acs_override=downstream"]
    change = changes(plan, seen, rendered_for(plan))
    assert change["cmdline"] is True and "refresh" in change["rebuild"]
    assert plan["reboot_for_cmdline"] is True and "iommu=pt" in plan["reboot_tokens"]
    # Still wanted: nothing to prune, nothing to change on the line.
    kept = make_plan(facts(node), dict(wanted, iommu_pt=True, extra_cmdline=["pcie_acs_override=downstream"]), seen)
    assert kept["cmdline"]["prune"] == [] and kept["cmdline"]["present"] == []


def test_a_token_no_longer_wanted_on_grub_needs_a_reboot_to_leave_the_running_kernel(fake_node):
    running = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet iommu=pt"
    node = fake_node("guide-intel", mutate=lambda p: p.update(cmdline=running))
    seen = {STATE_RECORD: record(), GRUB_DROPIN: owned('GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} iommu=pt"\n')}
    plan = make_plan(facts(node), {"devices": [{"address": "0000:02:00.0"}], "iommu_pt": False}, seen)
    assert plan["errors"] == [] and plan["boot_loader"] == "grub" and plan["cmdline_tokens"] == []
    assert "iommu=pt" in plan["reboot_tokens"] and plan["reboot_for_cmdline"] is True
    # The node's own /etc/default/grub keeps iommu=pt: the running kernel keeps it after a reboot too.
    seen["/etc/default/grub"] = text_file('GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n')
    plan = make_plan(facts(node), {"devices": [{"address": "0000:02:00.0"}], "iommu_pt": False}, seen)
    assert "iommu=pt" not in plan["reboot_tokens"]


def test_tokens_the_kernel_would_drop_from_a_full_command_line_are_refused(fake_node):
    """x86 keeps 2047 bytes of the command line and drops the rest silently: the role's tokens go at its end."""
    wanted = {"devices": [{"address": "0000:02:00.0"}], "iommu_pt": True}

    def long_line(length):
        def change(profile):
            prefix = "BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro x="
            profile["cmdline"] = prefix + "a" * (length - len(prefix))
        return facts(fake_node("guide-intel", mutate=change))
    refused = make_plan(long_line(2040), wanted, {})
    assert [e for e in refused["errors"] if "Linux on x86 keeps the first 2047" in e] == [
        "the kernel command line would be about 2049 bytes with iommu=pt - Linux on x86 keeps the first 2047 and drops "
        "the rest, so they would not take effect: shorten the command line (GRUB_CMDLINE_LINUX, then reboot) or "
        "passthrough_extra_cmdline"]
    assert not [e for e in make_plan(long_line(2038), wanted, {})["errors"] if "2047" in e]
