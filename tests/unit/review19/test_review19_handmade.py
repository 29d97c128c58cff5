"""Review 19 (adversarial): hand-made passthrough configuration (pci_facts vfio_host.handmade) that the reader
missed or misjudged, and adoption (passthrough_adopt) that took a running VM's device away - each planned by the
real planner from pci_facts of a fake guide-intel node (management NIC 0000:00:1f.6 eno1, driver e1000e,
8086:1a1c, GRUB; the card for VMs 0000:02:00.0 enp2s0, igc, 8086:15f3, IOMMU group 12) or sriov-x710 (PF
0000:04:00.0 with VFs 0000:04:02.0 and 0000:04:02.1, 8086:154c)."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from tests.unit.review19.review19_helpers import facts
from tests.unit.review19.test_review19_adopt import Node

GRUB = "/etc/default/grub"
NIC_CONF = "/etc/modprobe.d/nic.conf"
MANAGEMENT = "0000:00:1f.6"
CARD = "0000:02:00.0"
VM = "901 (/usr/bin/kvm -id 101)"


def handmade(fake_node, files: dict, profile: str = "guide-intel", mutate=None) -> dict:
    """{(file, line, text): entry} of vfio_host.handmade."""
    def change(p):
        p["files"].update(files)
        if mutate:
            mutate(p)
    node = fake_node(profile, mutate=change)
    host = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]["vfio_host"]
    return {(e["file"], e["line"], e["text"]): e for e in host["handmade"]}


def lockouts_of(found: dict) -> list[dict]:
    return [e for e in found.values() if e["lockout"]]


def lockouts(found: dict) -> dict:
    return {k: e["problems"] for k, e in found.items() if e["lockout"]}


# --- 1. configuration that keeps the management NIC's driver from loading is a lockout ------------------------
@pytest.mark.parametrize("command", ["/bin/false", "/bin/true", "/sbin/modprobe e1000e"])
def test_an_install_line_that_does_not_load_the_management_driver_is_a_lockout(fake_node, command):
    """`install e1000e /bin/false` keeps e1000e off exactly like `blacklist e1000e` (kmod runs the command instead
    of inserting the module), but the line was dropped by _modconf (install lines were kept for vfio only): no
    problem, no lockout, and the role rebooted the node off its network."""
    found = handmade(fake_node, {NIC_CONF: "install e1000e %s\n" % command})
    assert lockouts(found) == {(NIC_CONF, 1, "install e1000e %s" % command): [
        "runs %r instead of loading e1000e, the driver of the management NIC %s (eno1) - the node loses its "
        "network at the next boot" % (command, MANAGEMENT)]}


@pytest.mark.parametrize("command", ["/sbin/modprobe --ignore-install e1000e $CMDLINE_OPTS",
                                     "/sbin/modprobe -i e1000e; /usr/bin/logger e1000e loaded",
                                     "/sbin/insmod /lib/modules/e1000e.ko"])
def test_an_install_line_that_loads_the_module_is_no_problem(fake_node, command):
    """holds: modprobe --ignore-install (kmod tools/modprobe.c -i) and insmod load the module."""
    assert handmade(fake_node, {NIC_CONF: "install e1000e %s\n" % command}) == {}


def test_an_install_line_without_a_command_is_no_problem(fake_node):
    """holds: kmod ignores `install e1000e` with nothing after it (libkmod-config.c kmod_config_parse: syntax
    error), so it keeps nothing off."""
    assert handmade(fake_node, {NIC_CONF: "install e1000e\n"}) == {}


@pytest.mark.parametrize(("line", "command"), [("install e1000e   ", "  "),
                                               ("install e1000e # /sbin/modprobe --ignore-install e1000e",
                                                "# /sbin/modprobe --ignore-install e1000e")])
def test_an_install_command_of_white_space_or_a_shell_comment_keeps_the_driver_off(fake_node, line, command):
    """kmod takes everything after the module name as the command (white space and a "#" too - the shell then
    runs nothing): e1000e does not load."""
    found = handmade(fake_node, {NIC_CONF: line + "\n# the onboard NIC stays off\n"})
    assert [e["problems"][0].split(" instead")[0] for e in lockouts_of(found)] == ["runs %r" % command]


def test_install_lines_of_other_drivers_keep_the_blacklist_behaviour(fake_node):
    """holds: a driver no management device uses - a warning when a device uses it, nothing otherwise."""
    found = handmade(fake_node, {NIC_CONF: "install igc /bin/true\ninstall floppy /bin/false\n"})
    assert {k: (e["problems"], e["lockout"]) for k, e in found.items()} == {
        (NIC_CONF, 1, "install igc /bin/true"): (
            ["runs '/bin/true' instead of loading igc, which %s uses now - fine only if all of them go to VMs"
             % CARD], False)}


def test_the_role_refuses_to_reboot_into_an_install_line_that_keeps_the_management_nic_off(fake_node):
    """The role's lockout guard refuses the reboot, as for a blacklist; with reboot never it warns, and the
    install line is not refused as foreign vfio configuration."""
    node = fake_node("guide-intel", mutate=lambda p: p["files"].update({NIC_CONF: "install e1000e /bin/false\n"}))
    found = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    refused = make_plan(found, {"devices": [{"interface": "enp2s0"}], "reboot": "if_needed"})
    assert [e for e in refused["errors"] if "install e1000e" in e] == [
        "hand-made %s:1 ('install e1000e /bin/false'): runs '/bin/false' instead of loading e1000e, the driver of "
        "the management NIC %s (eno1) - the node loses its network at the next boot - a reboot by the role would "
        "lock you out: remove that line first, set passthrough_adopt: true to drop it, or set passthrough_reboot: "
        "never and deal with it yourself" % (NIC_CONF, MANAGEMENT)]
    warned = make_plan(found, {"devices": [{"interface": "enp2s0"}], "reboot": "never"})
    assert not [e for e in warned["errors"] if "install" in e], warned["errors"]
    assert [w for w in warned["warnings"] if w.startswith("hand-made %s:1" % NIC_CONF)]


def test_adoption_comments_out_an_install_line_that_keeps_the_management_nic_off(fake_node):
    plan = Node(fake_node, {NIC_CONF: "install e1000e /bin/false\n"}).plan(
        adopt=True, devices=[{"interface": "enp2s0"}], reboot="if_needed")
    assert plan["errors"] == []
    assert plan["adoption"]["texts"][NIC_CONF] == "#vfio.proxmox adopted# install e1000e /bin/false\n"


@pytest.mark.parametrize(("text", "token"), [
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet module_blacklist=igc,e1000e"\n', "module_blacklist=igc,e1000e"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet modprobe.blacklist=e1000e"\n', "modprobe.blacklist=e1000e"),
    ('GRUB_CMDLINE_LINUX=\'"module_blacklist=e1000e"\'\n', '"module_blacklist=e1000e"'),
])
def test_a_kernel_parameter_blacklisting_the_management_driver_is_a_lockout(fake_node, text, token):
    """module_blacklist= (the kernel refuses the module) and modprobe.blacklist= (kmod's blacklist from
    /proc/cmdline) naming e1000e take the node off the network at the next boot; module_blacklist was not even
    reported, modprobe.blacklist only as a line without a problem."""
    found = handmade(fake_node, {GRUB: text})
    assert list(lockouts(found)) == [(GRUB, 1, token)]
    assert lockouts(found)[(GRUB, 1, token)][0].endswith(
        "keeps off e1000e, the driver of the management NIC %s (eno1) - the node loses its network at the next "
        "boot" % MANAGEMENT)


def test_a_kernel_blacklist_in_a_file_the_boot_loader_does_not_read_or_of_another_driver_is_no_lockout(fake_node):
    """holds-after-fix: the guide-intel node boots with GRUB, so /etc/kernel/cmdline does not reach the kernel;
    a blacklist of the card's driver only warns."""
    found = handmade(fake_node, {"/etc/kernel/cmdline": "root=/dev/sda1 module_blacklist=e1000e\n",
                                 GRUB: 'GRUB_CMDLINE_LINUX="module_blacklist=igc"\n'})
    assert lockouts(found) == {}
    assert found[(GRUB, 1, "module_blacklist=igc")]["problems"] == [
        "the kernel parameter module_blacklist=igc keeps off igc, which %s uses now - fine only if all of them go "
        "to VMs" % CARD]


def _management_on_mlx5(profile: dict) -> None:
    """The management NIC on a driver whose name has an underscore (mlx5_core)."""
    nic = next(d for d in profile["devices"] if d["address"] == MANAGEMENT)
    nic["driver"] = "mlx5_core"


@pytest.mark.parametrize(("path", "text"), [
    (NIC_CONF, "install mlx5-core /bin/false\n"),
    (GRUB, 'GRUB_CMDLINE_LINUX="module_blacklist=mlx5-core"\n'),
    (GRUB, 'GRUB_CMDLINE_LINUX="modprobe.blacklist=igc,mlx5-core"\n'),
])
def test_module_names_compare_with_dash_and_underscore_alike(fake_node, path, text):
    found = handmade(fake_node, {path: text}, mutate=_management_on_mlx5)
    assert [p[0].split(" - ")[0].endswith("mlx5_core, the driver of the management NIC %s (eno1)" % MANAGEMENT)
            for p in lockouts(found).values()] == [True], found


# --- 2. GRUB files are shell: every quoting form binds ---------------------------------------------------------
@pytest.mark.parametrize("line", [
    "GRUB_CMDLINE_LINUX_DEFAULT='quiet vfio-pci.ids=8086:10d3'",
    "GRUB_CMDLINE_LINUX=\"quiet \"'vfio-pci.ids=8086:10d3'",
    'GRUB_CMDLINE_LINUX="quiet vfio-pci.ids=\\"8086:10d3\\""',
    "GRUB_CMDLINE_LINUX=quiet\\ vfio-pci.ids=8086:10d3",
    'export GRUB_CMDLINE_LINUX="quiet vfio-pci.ids=8086:10d3" # the NIC for VM 101',
])
def test_every_shell_quoting_of_a_grub_binding_is_read(fake_node, line):
    """The mixed (concatenated) form `"quiet "'vfio-pci.ids=...'` and a value with a trailing comment were read by
    a regex as `"'vfio-pci.ids=8086:10d3'` - no binding seen, so no guard and no adoption saw it."""
    found = handmade(fake_node, {GRUB: line + "\n"})
    assert [e["ids"] for e in found.values()] == [["8086:10d3"]], found


def test_a_grub_binding_of_the_management_nic_in_concatenated_quotes_is_a_lockout(fake_node):
    found = handmade(fake_node, {GRUB: "GRUB_CMDLINE_LINUX=\"quiet \"'vfio-pci.ids=8086:1a1c'\n"})
    assert list(lockouts(found).values()) == [[
        "binds %s (eno1), the management NIC, to vfio-pci (ids 8086:1a1c) - the node loses its network at the next "
        "boot" % MANAGEMENT]]


@pytest.mark.parametrize("line", [
    'GRUB_CMDLINE_LINUX="quiet $(cat /etc/vfio-ids)"',
    'GRUB_CMDLINE_LINUX="quiet vfio-pci.ids=`cat /etc/vfio-ids`"',
    'GRUB_CMDLINE_LINUX="quiet vfio-pci.ids=$IDS"',
    'GRUB_CMDLINE_LINUX="quiet ${IDS}vfio-pci.ids=8086:1a1c"',
    'GRUB_CMDLINE_LINUX="quiet ${PARAMS:-vfio-pci.ids=8086:1a1c}"',
    'GRUB_CMDLINE_LINUX="quiet vfio-pci.ids=8086:1a1c',
])
def test_a_grub_line_that_cannot_be_read_with_confidence_fails_closed(fake_node, line):
    """A command substitution, a reference inside a word or an unclosed quote could give the kernel a binding of
    the management NIC: reported whole, as a lockout (the boot loader reads this file)."""
    found = handmade(fake_node, {GRUB: line + "\n"})
    assert list(lockouts(found)) == [(GRUB, 1, line)]
    assert "cannot be read with confidence" in found[(GRUB, 1, line)]["problems"][0]


def test_adoption_takes_an_escaped_quoted_binding_out_of_a_grub_line(fake_node):
    """holds: adoption removes the token as written (backslashes and all) and sh reads the rest as before."""
    text = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet vfio-pci.ids=\\"8086:15f3\\" splash"\n'
    plan = Node(fake_node, {GRUB: text}).plan(adopt=True)
    assert plan["errors"] == []
    edited = plan["adoption"]["texts"][GRUB]
    out = subprocess.run(["sh", "-c", edited + 'printf %s "$GRUB_CMDLINE_LINUX_DEFAULT"'], capture_output=True,
                         text=True, check=True).stdout
    assert out == "quiet splash", edited


# Tokens as the kernel takes them: no white space; "$" and "`" are left out (the reader refuses them in a value,
# see the fail-closed test above), a token never starts with "$" (a ${...} reference, dropped).
TOKEN = st.text(alphabet=st.sampled_from(list("abz09=.,:_-/\"'\\#;&|()<>*?!{}~")), min_size=1, max_size=12)


def _double(token: str) -> str:
    return '"%s"' % token.replace("\\", "\\\\").replace('"', '\\"')


def _single(token: str) -> str:
    return "'%s'" % token.replace("'", "'\\''")


def _bare(token: str) -> str:
    return "".join("\\" + c if not c.isalnum() else c for c in token)


STYLES = {"double": lambda ts: _double(" ".join(ts)), "single": lambda ts: _single(" ".join(ts)),
          "bare": lambda ts: "\\ ".join(_bare(t) for t in ts),
          # every token in its own quoting, the spaces between them quoted too: one concatenated shell word
          "mixed": lambda ts: "' '".join((_double, _single, _bare)[i % 3](t) for i, t in enumerate(ts))}


@settings(max_examples=200, deadline=None)
@given(st.lists(TOKEN, min_size=1, max_size=6), st.sampled_from(sorted(STYLES)),
       st.sampled_from(["", " # a comment", "; GRUB_TIMEOUT=3", "\r"]))
def test_grub_tokens_written_in_any_quoting_read_back_equal(tokens, style, after):
    from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import grub_value_lines

    line = "GRUB_CMDLINE_LINUX_DEFAULT=%s%s\n" % (STYLES[style](tokens), after)
    (number, read, _written, problem), = grub_value_lines("GRUB_DEFAULT=0\n" + line)
    assert (number, read, problem) == (2, tokens, None), line


@settings(max_examples=30, deadline=None)
@given(st.lists(TOKEN, min_size=1, max_size=4), st.sampled_from(sorted(STYLES)))
def test_the_quoting_styles_are_what_sh_reads(tokens, style):
    """The writers above are right: sh (as grub-mkconfig sources the file) gives the tokens written."""
    line = "GRUB_CMDLINE_LINUX_DEFAULT=%s\n" % STYLES[style](tokens)
    out = subprocess.run(["sh", "-c", line + 'printf %s "$GRUB_CMDLINE_LINUX_DEFAULT"'], capture_output=True,
                         text=True, check=True).stdout
    assert out == " ".join(tokens), line


def test_an_escaped_dollar_is_refused_not_misread():
    """shlex keeps the backslash of \\$ inside double quotes, sh drops it: refused rather than read wrong."""
    from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import grub_value_lines

    (_n, tokens, _w, problem), = grub_value_lines('GRUB_CMDLINE_LINUX="a=\\$x"\n')
    assert tokens is None and "escaped $" in problem


# --- 3. adoption must not take a running VM's device away ------------------------------------------------------
def _card_in_vm(found: dict) -> None:
    card = next(d for d in found["vfio_pci_devices"] if d["address"] == CARD)
    card.update(driver="vfio-pci", netdevs=[])
    found["vfio_host"]["vfio_users"] = {card["iommu_group"]: [VM]}


def test_adoption_that_drops_the_boot_binding_of_a_device_a_vm_holds_is_refused(fake_node):
    """The hand-made ids bind the card VM 101 runs on; the admin adopts with a selection that leaves the card
    out. Adoption comments the ids out and only warned: at the next boot igc takes the card and VM 101 fails to
    start. Expected: refused before any write, naming the device, the line and the holder."""
    node = Node(fake_node, {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3\n"}, hook=_card_in_vm)
    plan = node.plan(adopt=True, devices=[{"address": "0000:00:02.0"}])
    named = [e for e in plan["errors"] if CARD in e and "/etc/modprobe.d/vfio.conf:1" in e and VM in e]
    assert named, plan["errors"]


def test_adoption_that_keeps_the_device_selected_is_not_refused(fake_node):
    """holds: the selection binds the card itself, so the VM keeps it."""
    node = Node(fake_node, {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3\n"}, hook=_card_in_vm)
    assert node.plan(adopt=True, devices=[{"address": CARD}])["errors"] == []
    assert node.plan(adopt=True)["errors"] == []  # the hand-made ids become the selection


def test_adoption_refuses_when_it_cannot_know_whether_a_vm_holds_the_device(fake_node):
    def unknown(found):
        _card_in_vm(found)
        found["vfio_host"].update(vfio_users=None, vfio_users_error="/proc cannot be read")
    node = Node(fake_node, {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3\n"}, hook=unknown)
    plan = node.plan(adopt=True, devices=[{"address": "0000:00:02.0"}])
    assert [e for e in plan["errors"] if CARD in e and "/proc cannot be read" in e], plan["errors"]


# --- 4. a hand-made binding of SR-IOV VFs ---------------------------------------------------------------------
def test_a_hand_made_binding_of_vfs_by_id_is_a_problem(fake_node):
    """`options vfio-pci ids=8086:154c` matches the X710's VFs: they exist only after the PF made them at runtime
    and the ID takes the VFs of every PF - no warning was given."""
    found = handmade(fake_node, {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:154c\n"}, "sriov-x710")
    entry = found[("/etc/modprobe.d/vfio.conf", 1, "options vfio-pci ids=8086:154c")]
    assert entry["lockout"] is False
    assert entry["problems"] == [
        "binds SR-IOV virtual functions by ID 8086:154c: 0000:04:02.0 (VF of 0000:04:00.0), 0000:04:02.1 (VF of "
        "0000:04:00.0) - VFs are made at runtime by their PF, and a binding by ID also takes the VFs of every other "
        "PF with that ID; set the VFs up with passthrough_sriov (vf_driver: vfio-pci) instead"]


def test_a_vf_binding_in_a_file_the_boot_loader_does_not_read_is_no_problem(fake_node):
    """holds: sriov-x710 boots with GRUB; /etc/kernel/cmdline binds nothing there."""
    found = handmade(fake_node, {"/etc/kernel/cmdline": "root=/dev/sda1 vfio-pci.ids=8086:154c\n"}, "sriov-x710")
    assert found[("/etc/kernel/cmdline", 1, "vfio-pci.ids=8086:154c")]["problems"] == []


def test_a_binding_of_the_pf_is_not_a_vf_problem(fake_node):
    """holds: the PF's own ID is no VF."""
    found = handmade(fake_node, {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:1572\n"}, "sriov-x710")
    assert found[("/etc/modprobe.d/vfio.conf", 1, "options vfio-pci ids=8086:1572")]["problems"] == []


def test_review19_helpers_facts_still_read_the_sriov_node(fake_node):
    assert facts(fake_node)["vfio_host"]["handmade"] == []


# --- found on the way: line numbers shifted by a leading blank line ---------------------------------------------
@pytest.mark.parametrize(("path", "text", "line"), [
    ("/etc/modprobe.d/vfio.conf", "\n\noptions vfio-pci ids=8086:15f3\n", 3),
    (GRUB, '\nGRUB_CMDLINE_LINUX="quiet vfio-pci.ids=8086:15f3"\n', 2),
    ("/etc/modules", "\nvfio_pci\n", 2),
])
def test_a_leading_blank_line_does_not_shift_the_line_adoption_edits(fake_node, path, text, line):
    """pci_facts read these files stripped, so a file starting with a blank line reported its lines one or more
    too early; adoption then commented out the blank line and left the binding in force (a modprobe.d file), or
    refused a plain GRUB line as not plain - while the plan said the line was taken over."""
    found = handmade(fake_node, {path: text})
    assert [k[1] for k in found if k[0] == path] == [line], found
    plan = Node(fake_node, {path: text}).plan(adopt=True, devices=[{"interface": "enp2s0"}])
    assert plan["errors"] == []
    assert plan["adoption"]["texts"][path].split("\n")[line - 1].startswith("#vfio.proxmox adopted# ")
