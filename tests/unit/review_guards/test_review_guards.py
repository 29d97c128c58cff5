"""Adversarial review of four guards (VM configs/mappings vs. VF count, sysfsutils globs, command-line length,
/etc/kernel/cmdline first line and /proc/cmdline splitting).

Written by an independent reviewer against 06e3c30. Tests marked FINDING failed there - each a way a Proxmox
administrator still got hurt - and pass since the fix that followed; tests marked HOLDS passed already.
"""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vm_configs import (
    mapping_paths,
    vm_pci,
    vm_references,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import sriov_plan

PF, KEPT, GONE = "0000:04:00.0", "0000:04:02.0", "0000:04:02.1"
NODE = "sriov-x710"


def sriov_facts(fake_node, files: dict | None = None, **profile):
    def change(p):
        p["files"].update(files or {})
        p.update(profile)
    node = fake_node("sriov-x710", mutate=change)
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def one_vf_less(fake_node, files: dict) -> list[str]:
    """The count of the X710 PF goes from 2 to 1: VF 0000:04:02.1 is removed."""
    return sriov_plan(sriov_facts(fake_node, files), [{"address": PF, "vfs": 1}])["errors"]


def refused_for_gone_vf(errors: list[str]) -> bool:
    return any(GONE in e and "could not start again" in e for e in errors)


# =====================================================================================================
# 1. VM configurations and PCI mappings
# =====================================================================================================

# --- FINDING -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hostpci", ["pcie=1,0000:04:02.1", "rombar=0,pcie=1,04:02.1"])
def test_finding_host_id_after_other_options_is_missed(fake_node, hostpci):
    """FINDING (VM does not start). `qm set 101 --hostpci0 pcie=1,0000:04:02.1` is stored verbatim, and qemu-server
    passes 0000:04:02.1 through: pve-common src/PVE/JSONSchema.pm parse_property_string() gives ANY part without
    `=` to the format's default_key (host, qemu-server src/PVE/QemuServer/PCI.pm $hostpci_fmt), wherever it
    stands in the list - not only the first part. _vm_configs._properties() only takes index 0, so the count that
    removes 04:02.1 is not refused and VM 101 fails at its next start ("no PCI device found for '0000:04:02.1'")."""
    errors = one_vf_less(fake_node, {"/etc/pve/qemu-server/101.conf": "name: fw\nhostpci0: %s\n" % hostpci})
    assert refused_for_gone_vf(errors), errors


def test_finding_empty_leading_part_before_the_host_id_is_missed(fake_node):
    """FINDING (VM does not start). parse_property_string skips empty parts (`next if $part =~ /^\\s*$/`), so
    `hostpci0: ,0000:04:02.1,pcie=1` names 04:02.1; the reader sets host to "" from part 0 and never looks further."""
    errors = one_vf_less(fake_node, {"/etc/pve/qemu-server/101.conf": "hostpci0: ,0000:04:02.1,pcie=1\n"})
    assert refused_for_gone_vf(errors), errors


@pytest.mark.parametrize("header", ["[pending]", "[Pending]"])
def test_finding_pending_section_header_is_case_insensitive(fake_node, header):
    """FINDING (VM does not start). qemu-server src/PVE/QemuServer.pm parse_vm_config():
    `$line =~ m/^\\[PENDING\\]\\s*$/i` - any case starts the pending section, applied at the next start. The reader
    compares the section name to "PENDING" exactly and takes `[pending]` for a snapshot (history), so a pending
    hostpci naming the removed VF is ignored."""
    errors = one_vf_less(fake_node, {"/etc/pve/qemu-server/101.conf": "name: fw\n%s\nhostpci0: %s\n" % (header, GONE)})
    assert refused_for_gone_vf(errors), errors


@pytest.mark.parametrize("blank", [" ", "\t", "  \t"])
def test_finding_blank_but_not_empty_line_does_not_end_a_mapping_section(fake_node, blank):
    """FINDING (VM on this node, or one HA moves here, does not start). pve-common src/PVE/SectionConfig.pm
    parse_config(): the section body loop is `while ($line = $nextline->())`, which stops only at an EMPTY line
    (Perl false); a line of blanks is true, does not match `^\\s+(\\S+)...`, is warned about ("ignore config line")
    and the section goes on, so the following `map` line still belongs to vf-pool. mapping_paths() ends the
    section at any line that strip()s empty and drops the map - this node's mapping of 04:02.1 is not seen."""
    files = {"/etc/pve/qemu-server/102.conf": "hostpci0: mapping=vf-pool\n",
             "/etc/pve/mapping/pci.cfg": "vf-pool\n\tdescription two VFs\n%s\n\tmap node=%s,path=%s,id=8086:154c\n"
                                         % (blank, NODE, GONE)}
    errors = one_vf_less(fake_node, files)
    assert refused_for_gone_vf(errors), errors


def test_finding_qemu_server_directory_that_cannot_be_listed_is_taken_for_no_vms(tmp_path, monkeypatch):
    """FINDING (fail open, VM does not start). The promise: an unreadable configuration refuses removing VFs as
    unknown. But vm_pci() lists /etc/pve/qemu-server through TreeReader.listdir(), which swallows every OSError
    and answers [] - an EACCES (module run without become: the directory is root:www-data 0750 in pmxcfs) or an
    EIO from a wedged pmxcfs reads as "no VM on this node", and every VF may go."""
    configs = tmp_path / "etc" / "pve" / "qemu-server"
    configs.mkdir(parents=True)
    (configs / "101.conf").write_text("hostpci0: %s\n" % GONE)
    real = os.listdir

    def listdir(path):
        if str(path) == str(configs):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(os, "listdir", listdir)
    found, why = vm_pci(TreeReader(), str(tmp_path), NODE)
    assert found is None and why, (found, why)


def test_finding_mapping_file_that_cannot_be_stat_ed_is_taken_for_no_mappings(tmp_path, monkeypatch):
    """FINDING (fail open). /etc/pve/mapping/pci.cfg is tested with os.path.exists(), which answers False for a
    stat that FAILS (EACCES on /etc/pve/mapping, EIO) as well as for a missing file: the mappings are then taken
    as none instead of unknown."""
    (tmp_path / "etc" / "pve" / "qemu-server").mkdir(parents=True)
    cfg = tmp_path / "etc" / "pve" / "mapping" / "pci.cfg"
    cfg.parent.mkdir()
    cfg.write_text("vf-pool\n\tmap node=%s,path=%s,id=8086:154c\n" % (NODE, GONE))
    real = os.stat

    def stat(path, *args, **kwargs):
        if str(path) == str(cfg):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", stat)
    found, why = vm_pci(TreeReader(), str(tmp_path), NODE)
    assert found is None or found["mappings"], (found, why)


# --- HOLDS -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "hostpci0:host=0000:04:02.1,pcie=1\n",                 # no blank after the colon (\\s* in parse_vm_config)
    "hostpci0: 0000:04:02.1\r\n",                           # CRLF (\\s*$ takes the CR)
    "hostpci3: 0000:05:00.0;04:02.1,pcie=1\n",              # several IDs
    "hostpci0: pcie=1,host=04:02\n",                        # host= keyed after options, device without function
    "hostpci0: 0000:04:02.1   \n",                          # trailing blanks
    "name: x\n[PENDING]\nhostpci0: 04:02.1\n[snap1]\nhostpci0: 05:00.0\n",
    "name: x\n[special:cloudinit]\nipconfig0: ip=dhcp\n[PENDING]\nhostpci0: 04:02.1\n",
])
def test_holds_accepted_forms_are_read(fake_node, text):
    """HOLDS: forms qemu-server accepts that the reader gets right."""
    assert refused_for_gone_vf(one_vf_less(fake_node, {"/etc/pve/qemu-server/101.conf": text}))


def test_holds_mapping_sections_with_comments_and_multiple_entries(fake_node):
    """HOLDS: comments inside a section (SectionConfig's nextline skips `^\\s*#`), several map lines for this
    node, a trailing-blank header, a VM without a direct reference."""
    files = {"/etc/pve/qemu-server/.keep": "",
             "/etc/pve/mapping/pci.cfg": "# header comment\nother\n\tmap node=pve2,path=0000:04:02.1,id=8086:154c\n\n"
                                         "vf-pool   \n# inner comment\n\tdescription x\n"
                                         "\tmap node=%s,path=0000:05:00.0,id=8086:154c\n"
                                         "\tmap node=%s,path=0000:04:02,id=8086:154c\n" % (NODE, NODE)}
    errors = one_vf_less(fake_node, files)
    assert any("PCI mapping vf-pool maps %s on this node" % GONE in e for e in errors), errors


def test_holds_node_name_from_fqdn_hostname(fake_node):
    """HOLDS: PVE::INotify::nodename() is uname's node name cut at the first dot; /proc/sys/kernel/hostname with an
    FQDN still matches `node=sriov-x710` in pci.cfg."""
    def change(p):
        p["files"]["/etc/pve/mapping/pci.cfg"] = "vf-pool\n\tmap node=%s,path=%s,id=8086:154c\n" % (NODE, GONE)
        p["files"]["/etc/pve/qemu-server/.keep"] = ""
    node = fake_node("sriov-x710", mutate=change)
    hostname = os.path.join(node.roots["procfs_root"], "sys", "kernel", "hostname")
    os.makedirs(os.path.dirname(hostname), exist_ok=True)
    with open(hostname, "w") as handle:
        handle.write(NODE + ".example.com\n")
    found = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    assert found["vfio_host"]["vm_pci"]["mappings"] == {"vf-pool": [GONE]}


def test_holds_readers_do_not_crash_on_odd_input():
    """HOLDS: no exception on odd lines (a lone colon, `hostpci0:` without value, a map line without a value, a
    header with several words, unicode line separators)."""
    vm_references("hostpci0:\n:\nhostpci1: =\nhostpci2: ,,,\n\u2028hostpci3: host=\x85\n[\n]\n")
    assert mapping_paths("a b\n\tmap\n\tmap ,,,=\n\tmap node\n\x0c\n", NODE) == {}


# =====================================================================================================
# 2. sysfsutils globs
# =====================================================================================================
def sysfs_plan(fake_node, conf: str) -> list[str]:
    node = fake_node("sriov-x710", mutate=lambda p: p["files"].update({"/etc/sysfs.d/60-vfs.conf": conf}))
    found = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    return sriov_plan(found, [{"address": PF, "vfs": 2}])["errors"]


@pytest.mark.parametrize("attribute", [
    "class/net//enp4s0f*/device/sriov_numvfs",        # doubled slash: the shell glob matches, fnmatch does not
    "class/net/enp4s0f*/device/./sriov_numvfs",
    "bus/pci/devices//0000:04:00.*/sriov_numvfs",
    "bus/pci/devices/0000:04:00.0/sriov_numvf?",      # the glob in the last component
    "bus/pci/devices/0000:04:00.0/sriov_num[v]fs",
])
def test_finding_glob_forms_the_shell_expands_to_the_pf_are_missed(fake_node, attribute):
    """FINDING (two writers of the count; the boot sets the VF count the role did not plan, VMs lose their VF).
    Debian's /etc/init.d/sysfsutils (a /bin/sh = dash script) expands `/sys/$f1` as a shell pathname glob: empty
    path components and `.` components are kept as they are and still resolve, and a glob in the LAST component
    (`sriov_numvf?`) expands to sriov_numvfs (checked with dash against a fake tree). numvfs_lines() only treats
    attributes ending in the literal `sriov_numvfs` as globs, and sets_count_of() fnmatches against the canonical
    `bus/pci/devices/ADDR/sriov_numvfs` / `class/net/IF/device/sriov_numvfs` spellings only."""
    errors = sysfs_plan(fake_node, "%s = 4\n" % attribute)
    assert any("sets the VF count of %s" % PF in e for e in errors), errors


@pytest.mark.parametrize("attribute", ["class/net/*/device/sriov_numvfs", "bus/pci/drivers/i40e/*/sriov_numvfs",
                                       "class/pci_bus/0000:04/device/*/sriov_numvfs",
                                       "./class/net/enp4s0f0*/device/sriov_numvfs",
                                       "bus/pci/devices/0000:04:00.[0-3]/sriov_numvfs"])
def test_holds_glob_forms_that_are_refused(fake_node, attribute):
    """HOLDS: globs through class/net, the driver directory, another tree (fail closed), ranges."""
    errors = sysfs_plan(fake_node, "%s = 4\n" % attribute)
    assert any("sets the VF count of %s" % PF in e for e in errors), errors


# =====================================================================================================
# 3. command-line length (x86 COMMAND_LINE_SIZE 2048: 2047 bytes + NUL)
# =====================================================================================================
WANTED = {"devices": [{"address": "0000:06:00.0"}], "iommu_pt": True}
INITRD = "initrd=\\EFI\\proxmox\\6.14.8-2-pve\\initrd.img-6.14.8-2-pve "


def zfs_facts(fake_node, running: str):
    node = fake_node("amd-zfs-uefi", mutate=lambda p: p.update(cmdline=running))
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def text_file(content: str) -> dict:
    import hashlib
    return {"exists": True, "type": "file", "mode": "0644", "uid": 0, "gid": 0, "content": content,
            "checksum": hashlib.sha1(content.encode()).hexdigest()}


def length_errors(plan: dict) -> list[str]:
    return [e for e in plan["errors"] if "2047" in e]


def padded(prefix: str, total_bytes: int, filler: str = "a") -> str:
    """prefix + ' x=' + filler up to `total_bytes` UTF-8 bytes."""
    head = prefix + " x="
    need = total_bytes - len(head.encode())
    unit = len(filler.encode())
    return head + filler * (need // unit) + "a" * (need % unit)


def test_finding_length_is_counted_in_characters_not_bytes(fake_node):
    """FINDING (iommu=pt silently cut off). The limit is in BYTES (arch/x86/include/asm/setup.h COMMAND_LINE_SIZE
    2048; the EFI stub and GRUB copy bytes). _too_long() takes len() of a decoded Python str: a running line of
    2040 bytes with 20 two-byte characters (a PARTLABEL, a systemd.hostname= in another script...) counts as 2020,
    so adding ` iommu=pt` (9 bytes, 2049 in all) is let through."""
    running = padded(INITRD + "root=ZFS=rpool/ROOT/pve-1 boot=zfs systemd.hostname=" + "é" * 20, 2040)
    assert len(running.encode()) == 2040
    plan = make_plan(zfs_facts(fake_node, running), WANTED, {})
    assert length_errors(plan), plan["errors"]


def test_finding_repeated_blanks_in_the_command_line_are_not_counted(fake_node):
    """FINDING (iommu=pt silently cut off). systemd-boot passes the entry's `options` (proxmox-boot-tool copies the
    first line of /etc/kernel/cmdline) to the kernel as written, double blanks included, and /proc/cmdline shows
    saved_command_line byte for byte; the kernel limit counts every one of those bytes. _too_long() re-joins the
    split tokens with ONE blank: 2040 bytes with 10 doubled blanks count as 2030, and 2049 bytes pass."""
    running = padded(INITRD + "root=ZFS=rpool/ROOT/pve-1  boot=zfs" + "  quiet" * 9, 2040)
    assert len(running.encode()) == 2040
    plan = make_plan(zfs_facts(fake_node, running), WANTED, {})
    assert length_errors(plan), plan["errors"]


def test_finding_next_boot_line_longer_than_the_running_one_is_not_checked(fake_node):
    """FINDING (iommu=pt silently cut off). The tokens reach the kernel on the NEXT boot, whose line is the first
    line of /etc/kernel/cmdline (+ initrd=) on systemd-boot - which the plan has in `seen`. An administrator who
    lengthened /etc/kernel/cmdline and did not reboot yet: the running line is short, so _too_long() lets a line
    of ~2060 bytes through."""
    own = padded("root=ZFS=rpool/ROOT/pve-1 boot=zfs", 2000) + "\n"
    plan = make_plan(zfs_facts(fake_node, INITRD + "root=ZFS=rpool/ROOT/pve-1 boot=zfs"), WANTED,
                     {"/etc/kernel/cmdline": text_file(own)})
    assert length_errors(plan), plan["errors"]


def test_finding_refusal_cannot_be_cleared_by_following_its_own_advice(fake_node):
    """FINDING (refusal without a way out short of an unplanned reboot). The error says "shorten the command line
    (GRUB_CMDLINE_LINUX, /etc/kernel/cmdline)". The administrator does so - /etc/kernel/cmdline is now short - and
    runs again: still refused, because only the RUNNING line is measured, and it changes only at a reboot."""
    running = padded(INITRD + "root=ZFS=rpool/ROOT/pve-1 boot=zfs", 2040)
    assert length_errors(make_plan(zfs_facts(fake_node, running), WANTED, {}))  # the first refusal
    shortened = {"/etc/kernel/cmdline": text_file("root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")}
    plan = make_plan(zfs_facts(fake_node, running), WANTED, shortened)
    assert not length_errors(plan), plan["errors"]


def test_finding_tokens_the_run_takes_out_are_still_counted(fake_node):
    """FINDING (a legitimate change refused). On systemd-boot the role prunes the tokens it added that are no longer
    wanted (a passthrough_extra_cmdline entry replaced by a shorter one) before it appends the new ones - the next
    boot's line is SHORTER than the running one. _too_long() adds the new token to the running line, which still
    holds the old token: 2040 + 1 + 30 bytes, refused, although the next boot gets ~2030."""
    import json

    from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import CMDLINE_RECORD, STATE_RECORD
    old, new = "foo.debug=" + "b" * 40, "foo.debug=" + "c" * 20
    own = padded("root=ZFS=rpool/ROOT/pve-1 boot=zfs", 2040 - len(INITRD) - len(old) - 1 - 9) + " " + old + " iommu=pt"
    running = INITRD + own
    assert len(running) == 2040
    mark = "# Ansible managed\n# vfio.proxmox: owned\n"
    seen = {STATE_RECORD: text_file(json.dumps({"_comment": "Ansible managed - vfio.proxmox: record", "selectors": {},
                                                "targets": [{"address": "0000:06:00.0", "id": "8086:125c"}],
                                                "created_dirs": []})),
            CMDLINE_RECORD: text_file(mark + "iommu=pt " + old + "\n"),
            "/etc/kernel/cmdline": text_file(own + "\n")}
    plan = make_plan(zfs_facts(fake_node, running), dict(WANTED, extra_cmdline=[new]), seen)
    assert old in plan["cmdline"]["prune"], plan["cmdline"]
    assert not length_errors(plan), plan["errors"]


def test_holds_exact_boundary(fake_node):
    """HOLDS: 2038 + ' iommu=pt' = 2047 is allowed, 2039 + 9 = 2048 refused."""
    ok = make_plan(zfs_facts(fake_node, padded(INITRD + "root=ZFS=rpool/ROOT/pve-1 boot=zfs", 2038)), WANTED, {})
    bad = make_plan(zfs_facts(fake_node, padded(INITRD + "root=ZFS=rpool/ROOT/pve-1 boot=zfs", 2039)), WANTED, {})
    assert not length_errors(ok) and length_errors(bad)


# =====================================================================================================
# 4. /etc/kernel/cmdline first line, /proc/cmdline splitting
# =====================================================================================================
def test_holds_running_cmdline_keeps_quoted_values_with_blanks_whole(fake_node):
    """HOLDS: lib/cmdline.c next_arg(): a quoted value with blanks is one parameter."""
    found = zfs_facts(fake_node, INITRD + 'root=ZFS=rpool/ROOT/pve-1 dyndbg="file x.c +p"\tquiet')
    assert found["vfio_host"]["cmdline"][-2:] == ['dyndbg="file x.c +p"', "quiet"]


def test_finding_first_line_after_leading_blank_line_is_taken_for_the_boot_line(fake_node):
    """FINDING (hand-made configuration misreported). proxmox-boot-tool (zz-proxmox-boot: get_first_line, a
    `read -r` of the file's first line) gives the boot entries the FIRST PHYSICAL line. _handmade strips the whole
    file first (reader.text), so with a leading empty line it reports the second line's tokens as line 1 of
    /etc/kernel/cmdline - tokens that do not reach the kernel - while plan/_desired.py (raw content
    .split("\\n", 1)[0]) edits the real, empty, line 1: the two readers disagree about the same file."""
    from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._handmade import kernel_parameters
    node = fake_node("amd-zfs-uefi", mutate=lambda p: p["files"].update(
        {"/etc/kernel/cmdline": "\nroot=ZFS=rpool/ROOT/pve-1 boot=zfs vfio-pci.ids=10de:1b80\n"}))
    found = kernel_parameters(TreeReader(), node.roots["etc_root"])
    assert not [f for f in found if f["file"] == "/etc/kernel/cmdline"], found


def test_holds_only_first_line_of_kernel_cmdline(fake_node):
    """HOLDS: a second line (a note, an old line kept) is not hand-made configuration."""
    from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._handmade import kernel_parameters
    node = fake_node("amd-zfs-uefi", mutate=lambda p: p["files"].update(
        {"/etc/kernel/cmdline": "root=ZFS=rpool/ROOT/pve-1 boot=zfs\nvfio-pci.ids=10de:1b80\n"}))
    found = kernel_parameters(TreeReader(), node.roots["etc_root"])
    assert not [f for f in found if "vfio-pci" in f["text"]], found
