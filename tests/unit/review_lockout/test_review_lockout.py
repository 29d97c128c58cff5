"""Adversarial review of 59ab95c (management-NIC lockout guard: aliases, pci-stub.ids=, initcall_blacklist=, the
package and runtime modprobe.d directories) and b1b044b (a foreign init-top script kept aside as
vfio-proxmox.vfio-proxmox-backup~).

Each test states what a Proxmox administrator should get and FAILS on eb0cc9d. The node is guide-intel:
management NIC 0000:00:1f.6 eno1 (e1000e, 8086:1a1c, modalias pci:v00008086d00001A1C...), GRUB; the card for VMs
is 0000:02:00.0 enp2s0 (igc). Rules used, from the sources that apply them:
- kmod v30 (Debian bookworm / PVE 8) libkmod.c default_config_paths: /etc/modprobe.d, /run/modprobe.d,
  /usr/local/lib/modprobe.d, /lib/modprobe.d. libkmod-config.c conf_files_filter_out(): a name starting with "."
  is skipped; names ending in ".conf" OR ".alias" are read. conf_files_insert_sorted(): a file whose name was
  already seen in an earlier directory is ignored ("Ignoring duplicate config file") - /etc/modprobe.d/X.conf
  (even a link to /dev/null) masks /lib/modprobe.d/X.conf, the documented way to override a package's file.
- shared/util.c freadline_wrapped() splits at "\\n" only and strtok_r(" \\t") keeps a "\\r": a CRLF line
  `alias PATTERN e1000e\\r` names the module "e1000e\\r"; kmod_lookup_alias_from_config() matches first and
  modules.alias is never consulted, so e1000e is not loaded.
- init/main.c obsolete_checksetup() compares __setup names with parameqn(): `initcall-blacklist=` is
  initcall_blacklist=.
- drivers/pci/pci-stub.c takes ids= like vfio-pci; `options pci-stub ids=` reaches it whenever it is loaded
  (initramfs-tools load_modules() runs `modprobe pci_stub` for a line of /etc/initramfs-tools/modules).
- driverctl keeps /etc/driverctl.d/pci-<address> and sets driver_override from it at every boot; a udev rule
  writing ATTR{driver_override} does the same. With driver_override=vfio-pci, e1000e never binds the NIC.
- initramfs-tools mkinitramfs / hook-functions set_initlist: every executable in scripts/init-top whose name is
  only [[:alnum:]._-] is copied and run at boot.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    INIT_TOP,
    STATE_RECORD,
    backup_path,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes
from tests.unit.plugins.module_utils.test_desired import facts, owned, record, text_file

VM_CARD = [{"interface": "enp2s0"}]
PORT = {"address": "0000:02:00.0", "id": "8086:15f3"}
OLD_BACKUP = INIT_TOP + ".vfio-proxmox-backup"
NEW_BACKUP = INIT_TOP + ".vfio-proxmox-backup~"
ADMIN_SCRIPT = "#!/bin/sh\n# the administrator's own early-boot fix\necho 1 > /sys/module/foo/parameters/bar\n"


def node_facts(fake_node, files, tweak=None):
    """guide-intel with `files` added; `tweak(root)` may add links after the tree is built."""
    node = fake_node("guide-intel", mutate=lambda p: p["files"].update(files))
    if tweak:
        tweak(node.out / "root")
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def lockouts(facts_):
    return [(e["file"], e["text"], e["problems"][0]) for e in facts_["vfio_host"]["handmade"] if e.get("lockout")]


def refusals(facts_, **inputs):
    plan = make_plan(facts_, dict({"devices": VM_CARD, "reboot": "if_needed"}, **inputs))
    return [e for e in plan["errors"] if "would lock you out" in e]


# --- Change A: forms of the same harm the guard still misses (the role reboots the node off the network) -----

def test_a_driverctl_override_of_the_management_nic_is_a_lockout(fake_node):
    """`driverctl set-override 0000:00:1f.6 vfio-pci` (the Proxmox forum's favourite) is saved in
    /etc/driverctl.d and applied at every boot. pci_facts reads the file (kind driverctl) but nothing checks it
    against the management NIC: the role reboots and eno1 comes up on vfio-pci."""
    got = node_facts(fake_node, {"/etc/driverctl.d/pci-0000:00:1f.6": "vfio-pci"})
    assert lockouts(got), got["vfio_host"]["handmade"]
    assert refusals(got)


@pytest.mark.parametrize("files", [
    {"/etc/modprobe.d/pci-stub.conf": "options pci-stub ids=8086:1a1c\n", "/etc/initramfs-tools/modules": "pci_stub\n"},
    {"/etc/initramfs-tools/modules": "pci_stub ids=8086:1a1c\n"},
], ids=["modprobe.d-options+initramfs-list", "initramfs-list-with-ids"])
def test_pci_stub_ids_outside_the_kernel_command_line_are_a_lockout(fake_node, files):
    """59ab95c checks pci-stub.ids= on the command line only; the older guides' other spelling - the kmod option
    with pci_stub loaded early from the initramfs module list - binds the NIC to pci-stub just the same."""
    got = node_facts(fake_node, files)
    assert lockouts(got), got["vfio_host"]["handmade"]
    assert refusals(got)


@pytest.mark.parametrize("path, text", [
    ("/usr/local/lib/modprobe.d/local.conf", "blacklist e1000e"),
    ("/etc/modprobe.d/nic.alias", "alias pci:v00008086d00001A1C* vfio-pci"),
], ids=["usr-local-lib-modprobe.d", "dot-alias-file"])
def test_module_configuration_kmod_reads_but_the_guard_does_not(fake_node, path, text):
    """kmod v30 also reads /usr/local/lib/modprobe.d and *.alias files; a lockout there is not seen."""
    got = node_facts(fake_node, {path: text + "\n"})
    assert [(f, t) for f, t, _problem in lockouts(got)] == [(path, text)]
    assert refusals(got)


def test_a_crlf_alias_to_the_nics_own_driver_is_a_lockout(fake_node):
    """A file saved with Windows line ends (WinSCP, a pasted snippet): kmod keeps the \\r, the config alias wins
    over modules.alias, and modprobe looks for the module "e1000e\\r" - the NIC gets no driver. The guard strips
    the \\r and sees the NIC's own driver."""
    path = "/etc/modprobe.d/nic.conf"
    got = node_facts(fake_node, {path: "# pin the onboard NIC's driver\r\nalias pci:v00008086d00001A1C* e1000e\r\n"})
    assert [f for f, _text, _problem in lockouts(got)] == [path], got["vfio_host"]["handmade"]


def test_initcall_blacklist_spelled_with_a_dash_is_a_lockout(fake_node):
    """The kernel takes initcall-blacklist= as initcall_blacklist= (parameqn); the new check compares the name
    exactly, so the same token with a dash is listed but never a lockout."""
    token = "initcall-blacklist=e1000_init_module"
    got = node_facts(fake_node, {"/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet %s"\n' % token})
    assert [t for _file, t, _problem in lockouts(got)] == [token], got["vfio_host"]["handmade"]
    assert refusals(got)


def test_a_udev_rule_setting_driver_override_on_the_management_nic_is_a_lockout(fake_node):
    """The udev form of a binding by address (pci_facts already reads /etc/udev/rules.d for sriov_numvfs)."""
    rule = 'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:00:1f.6", ATTR{driver_override}="vfio-pci"\n'
    got = node_facts(fake_node, {"/etc/udev/rules.d/99-vfio.rules": rule})
    assert lockouts(got), got["vfio_host"]["handmade"]
    assert refusals(got)


# --- Change A: a FALSE lockout - a healthy node refused, with advice that cannot work --------------------------

def _mask_with_dev_null(root):
    os.symlink("/dev/null", root / "etc" / "modprobe.d" / "vendor.conf")


@pytest.mark.parametrize("etc_override, tweak", [
    ({"/etc/modprobe.d/unrelated.conf": "\n"}, _mask_with_dev_null),
    ({"/etc/modprobe.d/vendor.conf": "# overrides /usr/lib/modprobe.d/vendor.conf (it blacklisted our NIC)\n"}, None),
], ids=["masked-by-dev-null-link", "overridden-by-same-name-file"])
def test_a_package_file_masked_in_etc_is_no_lockout(fake_node, etc_override, tweak):
    """A vendor package's /usr/lib/modprobe.d/vendor.conf blacklists e1000e; the admin did what modprobe.d(5)
    says - a file of the same name in /etc/modprobe.d (or a link to /dev/null) - so kmod never reads the package
    file and eno1 has been up through every boot. The guard reads it anyway and refuses the run with
    "remove that line first": editing a dpkg-owned file is undone by the next upgrade, and the proper override is
    already in place."""
    files = dict(etc_override, **{"/usr/lib/modprobe.d/vendor.conf": "blacklist e1000e\n"})
    got = node_facts(fake_node, files, tweak)
    assert lockouts(got) == []
    assert refusals(got) == []


def test_the_refusal_offers_adoption_only_where_adoption_can_drop_the_line(fake_node):
    """/etc/modprobe.d/nic.conf is a link into the site's config tree (etckeeper/config-management layouts do
    this). The lockout refusal says "set passthrough_adopt: true to drop it"; the admin does, and adoption refuses:
    "it is a link, not a regular file ... edit it by hand". The first message sent them the wrong way."""
    def link(root):
        (root / "etc" / "site").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "site" / "nic.conf").write_text("blacklist e1000e\n")
        (root / "etc" / "modprobe.d").mkdir(parents=True, exist_ok=True)
        os.symlink("../site/nic.conf", root / "etc" / "modprobe.d" / "nic.conf")
    got = node_facts(fake_node, {}, link)
    refused = refusals(got)
    assert len(refused) == 1, refused
    adopted = make_plan(got, {"devices": VM_CARD, "reboot": "if_needed", "adopt": True})
    cannot = [e for e in adopted["errors"] if "cannot take over /etc/modprobe.d/nic.conf" in e]
    assert "passthrough_adopt" not in refused[0] or not cannot, (refused[0], cannot)


# --- Change B: the kept-aside init-top script ------------------------------------------------------------------

def test_an_old_style_init_top_backup_is_not_left_runnable_at_every_boot(fake_node):
    """A node the previous release ran on keeps the administrator's script as vfio-proxmox.vfio-proxmox-backup
    (0755, a name initramfs-tools runs) - b1b044b's own changelog says it runs at every boot next to the role's
    script. The new release accepts that record and leaves the file where it is on every present run: the harm
    the change fixes stays on exactly the nodes that already have it. Expected: it is moved to the new name (the
    record updated), or at least the run says so."""
    node = fake_node("guide-intel")
    seen = {INIT_TOP: owned("#!/bin/sh\n"), OLD_BACKUP: text_file(ADMIN_SCRIPT, mode="0755"),
            STATE_RECORD: record(backups={INIT_TOP: OLD_BACKUP})}
    seen[INIT_TOP]["mode"] = "0755"
    plan = make_plan(facts(node), {"devices": [{"address": PORT["address"]}], "bind_method": "address"}, seen)
    assert plan["errors"] == []
    assert any(f["path"] == INIT_TOP and f["template"] for f in plan["files"])  # the role's script stays
    moved = (plan["state_record"] or {}).get("backups", {}).get(INIT_TOP) == backup_path(INIT_TOP)
    said = [m for m in plan["warnings"] + plan["errors"] if OLD_BACKUP in m]
    assert moved or said, (plan["state_record"], plan["warnings"])


def test_the_kept_aside_init_top_script_is_not_forgotten_when_the_role_stops_needing_the_path(fake_node):
    """Run 1 bound the card by address: the admin's script at the init-top path was kept aside as ...backup~
    (recorded). Run 2 binds by ID (bind_method back to auto): the role removes its script, does not put the
    admin's back, and writes a record without the backup - so the later rollback cannot put it back either. The
    script now sits under a name initramfs-tools skips: it silently stops running at boot, for good."""
    node = fake_node("guide-intel")
    got = facts(node)
    seen = {INIT_TOP: owned("#!/bin/sh\n"), NEW_BACKUP: text_file(ADMIN_SCRIPT, mode="0755"),
            STATE_RECORD: record(backups={INIT_TOP: NEW_BACKUP})}
    plan = make_plan(got, {"devices": [{"address": PORT["address"]}]}, seen)
    assert plan["errors"] == []
    change = changes(plan, seen, ["rendered %s\n" % f["path"] for f in plan["files"] if f["template"]])
    given_back = [r["path"] for r in change["restore"]] == [INIT_TOP]
    still_recorded = (plan["state_record"] or {}).get("backups", {}).get(INIT_TOP) == NEW_BACKUP
    assert INIT_TOP in change["remove"] or given_back
    assert given_back or still_recorded, (change["remove"], change["restore"], plan["state_record"])
