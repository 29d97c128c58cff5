"""passthrough_adopt: the guide's node, with the guide's mistakes, taken over and given back byte for
byte - planned from real pci_facts of a fake tree, written there with owned_files' own code."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._write import apply
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import files_state
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    ADOPT_MANIFEST,
    GRUB_DROPIN,
    STATE_RECORD,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._adopt import COMMENT
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import watched_paths

GUIDE = {
    "/etc/default/grub": 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'
                         'GRUB_CMDLINE_LINUX=""\n',
    "/etc/modules": "# /etc/modules: kernel modules to load at boot time.\nvfio\nvfio_iommu_type1\nvfio_pci\n"
                    "vfio_virqfd\nvfio\n",
    "/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3\n",
    # The guide's worst mistake: the management NIC's driver blacklisted with the card's.
    "/etc/modprobe.d/blacklist.conf": "blacklist e1000e\nblacklist igc\nblacklist pcspkr\n",
}


class Node:
    """A fake node: pci_facts and file_state read its tree; owned_files' code writes there."""

    def __init__(self, fake_node, profile: str, files: dict, cmdline: str | None = None) -> None:
        def mutate(p):
            p["files"].update(files)
            p["cmdline"] = cmdline or p["cmdline"]
        self.node = fake_node(profile, mutate=mutate)
        self.etc = self.node.roots["etc_root"]

    def real(self, path: str) -> str:
        return os.path.join(self.etc, path.lstrip("/"))

    def read(self, path: str) -> bytes:
        with open(self.real(path), "rb") as handle:
            return handle.read()

    def write(self, path: str, data: bytes) -> None:
        with open(self.real(path), "wb") as handle:
            handle.write(data)

    def facts(self) -> dict:
        return gather(run=self.node.run, which=self.node.which, **self.node.roots)["ansible_facts"]

    def plan(self, **inputs) -> tuple[dict, dict]:
        facts = self.facts()
        watch = watched_paths()
        seen = {p: dict(s, path=p) for p, s in zip(
            watch["paths"] + watch["read"],
            files_state([self.real(p) for p in watch["paths"] + watch["read"]],
                        [self.real(p) for p in watch["read"]]).values())}
        plan = make_plan(facts, dict({"devices": [], "bind_now": False}, **inputs), seen)
        return plan, seen

    def run(self, **inputs) -> tuple[dict, dict]:
        """The role's owned_files calls for this plan (templates stand in as a line; the record and the GRUB
        drop-in as the role writes them)."""
        plan, seen = self.plan(**inputs)
        assert plan["errors"] == []
        stand_in = {STATE_RECORD: json.dumps(dict(plan["state_record"] or {}, _comment="vfio.proxmox: record")),
                    GRUB_DROPIN: '# vfio.proxmox:\nGRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} %s"\n' % " ".join(
                        plan["cmdline_tokens"])}
        rendered = [stand_in.get(f["path"], "# vfio.proxmox: %s\n" % f["path"]) for f in plan["files"] if f["template"]]
        change = changes(plan, seen, rendered)
        if not change["any"]:
            return plan, change
        real = self.real
        apply([real(d) for d in change["dirs"]], [dict(f, path=real(f["path"])) for f in change["files"]],
              [real(p) for p in change["backup"]], [real(p) for p in change["remove"]],
              [{"path": real(r["path"]), "backup": real(r["backup"])} for r in change["restore"]], [], False,
              [{"path": real(c["path"]), "copy": real(c["copy"])} for c in change["copies"]])
        apply([], [], [], [], [{"path": real(r["path"]), "backup": real(r["backup"])} for r in change["give_back"]],
              [], False)
        apply([], [], [], [real(p) for p in change["finish"]["remove"]], [], [
            real(d) for d in change["finish"]["remove_empty_dirs"]], False)
        return plan, change


def taken(plan: dict) -> dict:
    return {(i["file"], i["line"], i["text"]): i["reason"] for i in plan["adoption"]["take"]}


def test_the_guide_is_adopted_its_ids_become_the_selection_and_its_mistakes_are_dropped(fake_node):
    node = Node(fake_node, "guide-intel", GUIDE)
    plan, _seen = node.plan(adopt=True, reboot="if_needed")
    assert plan["errors"] == []
    assert [(d["address"], d["selected_by"]) for d in plan["devices"]] == [
        ("0000:02:00.0", "hand-made ids 8086:15f3 (/etc/modprobe.d/vfio.conf:1)")]
    take = taken(plan)
    assert take[("/etc/modprobe.d/blacklist.conf", 1, "blacklist e1000e")].startswith(
        "dropped: blacklists e1000e, the driver of the management NIC 0000:00:1f.6 (eno1)")
    assert take[("/etc/modules", 5, "vfio_virqfd")].startswith("dropped: vfio_virqfd does not exist on 6.8.12-4-pve")
    assert ("/etc/modules", 6, "vfio") in take  # the duplicate
    assert take[("/etc/default/grub", 3, "iommu=pt")] == "the role's plan writes iommu=pt itself"
    left = {(i["file"], i["line"], i["text"]): i["reason"] for i in plan["adoption"]["leave"]}
    # 6.8 has the Intel IOMMU on by default, so the plan does not write it: the hand-made one stays.
    # blacklist pcspkr is not about passthrough: not reported, not touched.
    assert left == {("/etc/default/grub", 3, "intel_iommu=on"): "left alone: the role's plan does not write "
                    "intel_iommu=on"}
    texts = plan["adoption"]["texts"]
    assert texts["/etc/modprobe.d/vfio.conf"] == COMMENT + "options vfio-pci ids=8086:15f3\n"
    assert texts["/etc/modprobe.d/blacklist.conf"] == (
        COMMENT + "blacklist e1000e\n" + COMMENT + "blacklist igc\nblacklist pcspkr\n")
    assert texts["/etc/default/grub"].splitlines()[2:4] == [
        COMMENT + 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"',
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"']
    # The lockout blacklist is adopted, so the reboot is no longer refused.
    assert not any("lock you out" in e for e in plan["errors"] + plan["warnings"])
    assert plan["adopt"]["rebuild"] == ["grub", "initramfs"]
    assert [c["copy"] for c in plan["adopt"]["copies"]] == [
        "/etc/vfio-proxmox/adopted" + p for p in sorted(GUIDE)]


def test_adoption_is_idempotent_and_the_rollback_gives_every_file_back_byte_for_byte(fake_node):
    # Booted with the guide's command line, as after the guide's reboot.
    booted = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt"
    node = Node(fake_node, "guide-intel", GUIDE, cmdline=booted)
    before = {p: node.read(p) for p in GUIDE}
    modes = {p: os.stat(node.real(p)).st_mode for p in GUIDE}
    _plan, change = node.run(adopt=True)
    assert sorted(change["adopt"]) == sorted([ADOPT_MANIFEST] + list(GUIDE))
    for path in GUIDE:
        assert node.read("/etc/vfio-proxmox/adopted" + path) == before[path]
    again, change = node.run(adopt=True)
    assert change["adopt"] == [] and change["copies"] == []
    # Nothing left to take over; the selection came from the manifest, the lines left alone stay hand-made.
    assert again["adoption"] is None and again["errors"] == []
    assert [d["address"] for d in again["devices"]] == ["0000:02:00.0"]
    assert [e["text"] for e in node.facts()["vfio_host"]["handmade"]] == ["intel_iommu=on"]
    plan, change = node.run(state="absent")
    assert [r["path"] for r in change["give_back"]] == sorted(GUIDE)
    # The guide's GRUB line comes back with the tokens: no reboot for them.
    assert plan["reboot_tokens"] == []
    assert {"grub", "initramfs"} <= set(change["rebuild"])
    assert {p: node.read(p) for p in GUIDE} == before
    assert {p: os.stat(node.real(p)).st_mode for p in GUIDE} == modes
    assert not os.path.exists(node.real("/etc/vfio-proxmox"))


def test_a_file_changed_since_adoption_stops_the_rollback_before_any_write(fake_node):
    node = Node(fake_node, "guide-intel", GUIDE)
    node.run(adopt=True)
    node.write("/etc/modules", node.read("/etc/modules") + b"nvme\n")
    plan, _seen = node.plan(state="absent")
    assert plan["errors"] == [
        "passthrough_state: absent would overwrite /etc/modules, which changed since it was adopted (sha1 %s "
        "without the role's own lines, adoption left %s) - compare it with its original "
        "/etc/vfio-proxmox/adopted/etc/modules and put that back by hand, or undo the change" % (
            files_state([node.real("/etc/modules")], [])[node.real("/etc/modules")]["checksum"],
            plan["adopted"]["files"]["/etc/modules"]["adopted"])]


def test_a_second_adoption_refuses_a_file_changed_since_the_first(fake_node):
    node = Node(fake_node, "guide-intel", GUIDE)
    node.run(adopt=True)
    node.write("/etc/modules", node.read("/etc/modules") + b"vfio_pci\n")
    plan, _seen = node.plan(adopt=True)
    assert plan["errors"] == [
        "passthrough_adopt: cannot take over /etc/modules:7 ('vfio_pci'): it changed since it was adopted (its "
        "original is /etc/vfio-proxmox/adopted/etc/modules) - roll back first, or remove the line by hand"]


def test_the_admins_devices_win_and_a_device_only_the_guide_bound_is_named(fake_node):
    files = dict(GUIDE, **{"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3,10de:1b80 disable_vga=1\n"})
    node = Node(fake_node, "dual-port-igb", dict(files, **{
        "/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:1521 disable_vga=1\n"}))
    plan, _seen = node.plan(adopt=True, devices=[{"interface": "enp1s0f1"}])
    assert plan["errors"] == []
    assert [d["selected_by"] for d in plan["devices"]] == ["passthrough_devices[0]"]
    assert plan["warnings"] == [
        "the hand-made configuration binds 0000:01:00.0 (8086:1521), which this plan does not select: it goes back "
        "to its driver at the next boot"]
    # The other option stays in force; only ids= is taken out.
    assert plan["adoption"]["texts"]["/etc/modprobe.d/vfio.conf"] == (
        COMMENT + "options vfio-pci ids=8086:1521 disable_vga=1\noptions vfio-pci disable_vga=1\n")


def test_hand_made_ids_of_a_card_that_is_gone_select_nothing_and_adoption_says_so(fake_node):
    gone = {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=10de:1b80"}
    node = Node(fake_node, "guide-intel", dict(GUIDE, **gone))
    plan, _seen = node.plan(adopt=True)
    assert plan["devices"] == []
    assert "passthrough_adopt: nothing to adopt into" in plan["errors"][0]
    assert "hand-made ids 10de:1b80 (/etc/modprobe.d/vfio.conf:1): no device with this ID on this node - not in the " \
           "plan" in plan["reasons"]


def test_hand_made_ids_that_take_the_management_nic_are_refused_by_the_lockout_guard(fake_node):
    management = {"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:1a1c"}
    node = Node(fake_node, "guide-intel", dict(GUIDE, **management))
    plan, _seen = node.plan(adopt=True)
    assert len(plan["errors"]) == 1
    assert plan["errors"][0].startswith("hand-made ids 8086:1a1c (/etc/modprobe.d/vfio.conf:1) (0000:00:1f.6): "
                                        "refusing - it carries a management path")


@pytest.mark.parametrize(("data", "problem"), [
    (b"blacklist igc\n# \xff\n", "it is not UTF-8 text - edit it by hand"),
    (None, "it is a link, not a regular file - adoption would replace it; edit it by hand"),
])
def test_a_file_adoption_cannot_edit_exactly_is_refused(fake_node, data, problem):
    node = Node(fake_node, "guide-intel", GUIDE)
    path = node.real("/etc/modprobe.d/blacklist.conf")
    os.unlink(path)
    if data is None:
        with open(path + ".real", "w", encoding="utf-8") as handle:
            handle.write("blacklist igc\n")
        os.symlink(os.path.basename(path) + ".real", path)
    else:
        with open(path, "wb") as handle:
            handle.write(data)
    plan, _seen = node.plan(adopt=True)
    assert plan["errors"] == ["passthrough_adopt: cannot take over /etc/modprobe.d/blacklist.conf:1 ('blacklist igc'):"
                              " " + problem]


def test_a_multi_line_options_command_with_other_options_is_refused(fake_node):
    node = Node(fake_node, "guide-intel", dict(GUIDE, **{
        "/etc/modprobe.d/vfio.conf": "options vfio-pci \\\n  ids=8086:15f3 disable_vga=1\n"}))
    plan, _seen = node.plan(adopt=True)
    assert plan["errors"] == ["passthrough_adopt: cannot take over /etc/modprobe.d/vfio.conf:1 ('options vfio-pci    "
                              "ids=8086:15f3 disable_vga=1'): the command continues over several lines - join it by "
                              "hand"]


def test_systemd_boot_tokens_are_taken_out_and_written_again_by_the_role(fake_node):
    cmdline = "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt amd_iommu=on vfio-pci.ids=8086:125c\n"
    node = Node(fake_node, "amd-zfs-uefi", {"/etc/kernel/cmdline": cmdline,
                                            "/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'})
    plan, seen = node.plan(adopt=True)
    assert plan["errors"] == []
    assert [d["selected_by"] for d in plan["devices"]] == ["hand-made ids 8086:125c (/etc/kernel/cmdline:1)"]
    assert plan["adoption"]["texts"] == {"/etc/kernel/cmdline": "root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on\n"}
    left = {i["text"]: i["reason"] for i in plan["adoption"]["leave"]}
    assert left["iommu=pt"] == "left alone: /etc/default/grub does not reach the kernel with systemd-boot"
    assert left["amd_iommu=on"] == "left alone: the role's plan does not write amd_iommu=on"
    # The role adds its own iommu=pt (recorded, so a rollback takes it out before the original returns).
    assert plan["cmdline"]["present"] == ["iommu=pt"]
    change = changes(plan, seen, ["x\n" for f in plan["files"] if f["template"]])
    assert change["cmdline"] and "refresh" in change["rebuild"]


def test_without_adopt_a_hand_made_ids_line_is_still_refused(fake_node):
    node = Node(fake_node, "guide-intel", GUIDE)
    plan, _seen = node.plan(devices=[{"interface": "enp2s0"}])
    assert any(e.startswith("foreign vfio-pci ids at /etc/modprobe.d/vfio.conf:1") for e in plan["errors"])
    assert plan["adoption"] is None and plan["adopt"]["files"] == []


def test_the_roles_block_added_after_adoption_is_not_a_change_but_a_hand_edit_beside_it_is(fake_node):
    modules = "# List of modules for the initramfs\nvfio\nvfio_pci\n"
    node = Node(fake_node, "guide-intel", dict(GUIDE, **{"/etc/initramfs-tools/modules": modules}))
    node.run(adopt=True)
    block = ("# BEGIN vfio.proxmox: vfio modules for the initramfs\nvfio\nvfio_iommu_type1\nvfio_pci\n"
             "# END vfio.proxmox: vfio modules for the initramfs\n")
    node.write("/etc/initramfs-tools/modules", node.read("/etc/initramfs-tools/modules") + block.encode())
    plan, _seen = node.plan(state="absent")
    assert plan["errors"] == []
    assert "/etc/initramfs-tools/modules" in [r["path"] for r in plan["give_back"]]
    node.write("/etc/initramfs-tools/modules", node.read("/etc/initramfs-tools/modules") + b"nvme\n")
    plan, _seen = node.plan(state="absent")
    assert [e.split(",")[0] for e in plan["errors"]] == [
        "passthrough_state: absent would overwrite /etc/initramfs-tools/modules"]


@pytest.mark.parametrize(("line", "after"), [
    ("options vfio-pci ids=8086:15f3  # the 2.5G card\n", ""),
    ("options vfio_pci disable_vga=1 ids=8086:15f3 # card\r\n", "options vfio_pci disable_vga=1\r\n"),
])
def test_an_ids_line_with_a_comment_or_crlf_keeps_only_what_is_not_ids(fake_node, line, after):
    node = Node(fake_node, "guide-intel", {"/etc/modprobe.d/vfio.conf": line})
    plan, _seen = node.plan(adopt=True)
    assert plan["errors"] == []
    assert plan["adoption"]["texts"]["/etc/modprobe.d/vfio.conf"] == COMMENT + line + after.replace("\r\n", "\n")


def test_debians_modules_load_link_to_etc_modules_is_one_file_not_a_duplicate(fake_node):
    # On Debian, /etc/modules-load.d/modules.conf -> ../modules (seen in the real-boot guest).
    node = Node(fake_node, "guide-intel", GUIDE)
    os.makedirs(node.real("/etc/modules-load.d"), exist_ok=True)
    os.symlink("../modules", node.real("/etc/modules-load.d/modules.conf"))
    handmade = node.facts()["vfio_host"]["handmade"]
    assert [e["file"] for e in handmade if e["kind"] == "load"] == ["/etc/modules"] * 5
    plan, _seen = node.plan(adopt=True)
    assert plan["errors"] == []
    assert "/etc/modules" in plan["adoption"]["texts"]
    assert os.path.islink(node.real("/etc/modules-load.d/modules.conf"))


# --- a last line without a final newline (defect: the original and the edited line were joined) ---

def test_a_grub_line_without_a_final_newline_keeps_its_variable(fake_node):
    grub = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt"'
    node = Node(fake_node, "guide-intel", dict(GUIDE, **{"/etc/default/grub": grub}))
    plan, _seen = node.plan(adopt=True)
    assert plan["errors"] == []
    assert plan["adoption"]["texts"]["/etc/default/grub"] == (
        'GRUB_DEFAULT=0\n' + COMMENT + 'GRUB_CMDLINE_LINUX="root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt"\n'
        'GRUB_CMDLINE_LINUX="root=ZFS=rpool/ROOT/pve-1 boot=zfs"')


def test_an_options_line_without_a_final_newline_keeps_its_other_options(fake_node):
    node = Node(fake_node, "guide-intel", dict(GUIDE, **{
        "/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3 disable_vga=1"}))
    plan, _seen = node.plan(adopt=True)
    assert plan["errors"] == []
    assert plan["adoption"]["texts"]["/etc/modprobe.d/vfio.conf"] == (
        COMMENT + "options vfio-pci ids=8086:15f3 disable_vga=1\noptions vfio-pci disable_vga=1")


BLOCK = ("# BEGIN vfio.proxmox: vfio modules for the initramfs\nvfio\nvfio_iommu_type1\nvfio_pci\n"
         "# END vfio.proxmox: vfio modules for the initramfs\n")


def test_an_initramfs_module_list_without_a_final_newline_is_given_back(fake_node):
    original = b"# List of modules for the initramfs\nvfio\nvfio_pci"
    node = Node(fake_node, "guide-intel", dict(GUIDE, **{"/etc/initramfs-tools/modules": original.decode()}))
    node.run(adopt=True)
    adopted = node.read("/etc/initramfs-tools/modules")
    assert not adopted.endswith(b"\n")
    # blockinfile ends the last line before it inserts the block, and leaves that newline when it removes it.
    node.write("/etc/initramfs-tools/modules", adopted + b"\n" + BLOCK.encode())
    plan, _seen = node.plan(state="absent")
    assert plan["errors"] == []
    node.write("/etc/initramfs-tools/modules", adopted + b"\n")
    plan, _seen = node.plan(state="absent")
    assert plan["errors"] == []
    node.run(state="absent")
    assert node.read("/etc/initramfs-tools/modules") == original


# --- every form of a binding the kernel and kmod read (defect: only the plainest was seen) ---

MANAGEMENT_FORMS = [
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=8086:1a1c\n"),  # the plainest form
    ("/etc/modprobe.d/vfio.conf", 'options vfio-pci ids="8086:1a1c"\n'),
    ("/etc/modprobe.d/vfio.conf", 'options vfio_pci "ids=8086:1a1c"\n'),
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=8086:1a1c:ffffffff:ffffffff\n"),
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=ffffffff:ffffffff:ffffffff:ffffffff:020000:ffff00\n"),
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=0x8086:0x1A1C\n"),
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:1b80 ids=8086:1a1c\n"),
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci disable_vga=1 # ids=8086:1a1c\n"),
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci \\\n ids=8086:1a1c\n"),
    ("/etc/initramfs-tools/modules", "vfio_pci ids=8086:1a1c\n"),
    ("/etc/initramfs-tools/modules", "vfio-pci disable_vga=1 ids=10de:1b80,8086:1a1c\n"),
    ("/etc/default/grub", 'GRUB_CMDLINE_LINUX="vfio-pci.ids=8086:1a1c"\n'),
    ("/etc/default/grub.d/passthrough.cfg", 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX vfio_pci.ids=8086:1a1c"\n'),
    ("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet vfio-pci.ids=\\"8086:1a1c\\""\n'),
]


@pytest.mark.parametrize(("path", "text"), MANAGEMENT_FORMS)
def test_every_form_of_a_hand_made_binding_of_the_management_nic_is_refused(fake_node, path, text):
    node = Node(fake_node, "guide-intel", {path: text})
    plan, _seen = node.plan(devices=[{"interface": "enp2s0"}], bind_method="address")
    refused = [e for e in plan["errors"] if e.startswith("foreign vfio-pci ids at %s:" % path)]
    assert refused and "it binds 0000:00:1f.6, which is not selected" in refused[0], plan["errors"]
    handmade = [e for e in node.facts()["vfio_host"]["handmade"] if e["file"] == path]
    assert any(e["lockout"] for e in handmade), handmade


def test_a_vfio_pci_ids_parameter_in_etc_kernel_cmdline_not_yet_booted_is_refused(fake_node):
    cmdline = "root=ZFS=rpool/ROOT/pve-1 boot=zfs vfio-pci.ids=10ec:8125\n"
    node = Node(fake_node, "amd-zfs-uefi", {"/etc/kernel/cmdline": cmdline})
    plan, _seen = node.plan(devices=[{"interface": "enp6s0"}], bind_method="address")
    refused = [e for e in plan["errors"] if e.startswith("foreign vfio-pci ids at /etc/kernel/cmdline:1")]
    assert refused and "it binds 0000:05:00.0, which is not selected" in refused[0], plan["errors"]


# --- an initramfs vfio_pci ids= line names what it stops binding (defect: commented out silently) ---

def test_adopting_an_initramfs_ids_line_names_the_device_it_stops_binding(fake_node):
    node = Node(fake_node, "dual-port-igb", dict(GUIDE, **{
        "/etc/modprobe.d/vfio.conf": "options vfio-pci disable_vga=1\n",
        "/etc/initramfs-tools/modules": "vfio\nvfio_pci ids=8086:1521\n"}))
    plan, _seen = node.plan(adopt=True, devices=[{"interface": "enp1s0f1"}])
    assert plan["errors"] == []
    assert ("the hand-made configuration binds 0000:01:00.0 (8086:1521), which this plan does not select: it goes "
            "back to its driver at the next boot") in plan["warnings"]
    assert "ids 8086:1521" in taken(plan)[("/etc/initramfs-tools/modules", 2, "vfio_pci ids=8086:1521")]


# --- an adoption interrupted after its manifest (defect: the next run said the files changed) ---

def test_an_adoption_interrupted_after_its_manifest_is_completed_by_the_next_run(fake_node):
    node = Node(fake_node, "guide-intel", GUIDE)
    before = {p: node.read(p) for p in GUIDE}
    plan, seen = node.plan(adopt=True)
    change = changes(plan, seen, ["# vfio.proxmox: x\n" for f in plan["files"] if f["template"]])
    real = node.real
    # owned_files writes the copies, then the manifest, then the files: killed right after the manifest.
    manifest = [dict(f, path=real(f["path"])) for f in change["files"] if f["path"] == ADOPT_MANIFEST]
    apply([real(d) for d in change["dirs"]], manifest, [], [], [], [], False,
          [{"path": real(c["path"]), "copy": real(c["copy"])} for c in change["copies"]])
    assert {p: node.read(p) for p in GUIDE} == before
    again, _seen = node.plan(adopt=True)
    assert again["errors"] == []
    assert again["adoption"]["texts"] == plan["adoption"]["texts"]
    assert any("interrupted" in r for r in again["reasons"]), again["reasons"]
    node.run(adopt=True)
    assert node.read("/etc/modprobe.d/vfio.conf") == (COMMENT + "options vfio-pci ids=8086:15f3\n").encode()
    node.run(state="absent")
    assert {p: node.read(p) for p in GUIDE} == before
