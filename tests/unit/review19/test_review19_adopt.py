"""Review 19 (adversarial): adoption of hand-made configuration (passthrough_adopt) and the hand-made lockout
guards, planned by the real planner from pci_facts and file_state of a fake guide-intel node (management NIC
0000:00:1f.6 eno1, driver e1000e, 8086:1a1c; the card for VMs 0000:02:00.0 enp2s0, 8086:15f3). A test marked
"holds" passes; every other test fails for the defect its docstring names."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import files_state
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._adopt import COMMENT
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import watched_paths as composed_paths

GRUB = "/etc/default/grub"


class Node:
    """A fake node: pci_facts and file_state read its tree (as tests/unit/plugins/module_utils/test_adopt.py)."""

    def __init__(self, fake_node, files: dict, profile: str = "guide-intel", mutate=None, hook=None) -> None:
        def change(p):
            p["files"].update(files)
            if mutate:
                mutate(p)
        self.node = fake_node(profile, mutate=change)
        self.hook = hook
        self.etc = self.node.roots["etc_root"]

    def real(self, path: str) -> str:
        return os.path.join(self.etc, path.lstrip("/"))

    def plan(self, **given) -> dict:
        found = gather(run=self.node.run, which=self.node.which, **self.node.roots)["ansible_facts"]
        if self.hook:
            self.hook(found)
        watch = composed_paths()
        seen = {p: dict(s, path=p) for p, s in zip(
            watch["paths"] + watch["read"],
            files_state([self.real(p) for p in watch["paths"] + watch["read"]],
                        [self.real(p) for p in watch["read"]]).values())}
        return plan_node(found, dict({"state": "present", "devices": [], "sriov": [], "bind_now": False}, **given),
                         seen)


def sh_parses(text: str) -> bool:
    """Whether /bin/sh (grub-mkconfig sources /etc/default/grub with it) can parse the file."""
    return subprocess.run(["sh", "-n", "-c", text], capture_output=True, check=False).returncode == 0


def sh_value(text: str, name: str) -> str:
    """The value sh gives a variable after sourcing the text (what grub-mkconfig sees)."""
    out = subprocess.run(["sh", "-c", text + '\nprintf %s "$' + name + '"'], capture_output=True, text=True,
                         check=False)
    return out.stdout


# --- FAILS: adoption breaks /etc/default/grub -----------------------------------------------------------------
@pytest.mark.parametrize("line", [
    'GRUB_CMDLINE_LINUX_DEFAULT="quiet vfio-pci.ids=8086:15f3" # for the VM NIC\n',
    'GRUB_CMDLINE_LINUX_DEFAULT="quiet vfio-pci.ids=8086:15f3"; GRUB_TIMEOUT=3\n',
])
def test_adopting_a_grub_line_with_a_trailing_comment_leaves_an_unterminated_quote(fake_node, line):
    """Adoption rewrites a GRUB line that has a trailing comment (or a second assignment) into
    `GRUB_CMDLINE_LINUX_DEFAULT="quiet # ...` - an unclosed quote: update-grub fails (sh syntax error) or the
    quote swallows the following lines; the node boots an old or broken grub.cfg."""
    text = 'GRUB_DEFAULT=0\n' + line + 'GRUB_CMDLINE_LINUX=""\n'
    assert sh_parses(text)
    plan = Node(fake_node, {GRUB: text}).plan(adopt=True)
    edited = (plan["adoption"] or {}).get("texts", {}).get(GRUB)
    if plan["errors"] or edited is None:
        return  # a refusal (or leaving the file alone) would be fine
    assert sh_parses(edited), edited
    assert sh_value(edited, "GRUB_CMDLINE_LINUX_DEFAULT") == "quiet", edited


# --- FAILS: hand-made lockouts the guard does not see -------------------------------------------------------


# --- HOLDS ---------------------------------------------------------------------------------------------------
def test_holds_a_crlf_grub_file_keeps_its_line_endings_when_adopted(fake_node):
    """Holds: a GRUB file saved with CRLF is edited without mixing line endings or dropping the variable."""
    text = 'GRUB_DEFAULT=0\r\nGRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt vfio-pci.ids=8086:15f3"\r\n'
    plan = Node(fake_node, {GRUB: text}).plan(adopt=True)
    assert plan["errors"] == []
    assert plan["adoption"]["texts"][GRUB] == (
        'GRUB_DEFAULT=0\r\n' + COMMENT + 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt vfio-pci.ids=8086:15f3"\r\n'
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\r\n')


def test_holds_a_single_quoted_or_escaped_grub_value_stays_valid_shell(fake_node):
    """Holds: single quotes and \\" escapes around other tokens survive adoption as valid shell."""
    for line in ("GRUB_CMDLINE_LINUX_DEFAULT='quiet iommu=pt vfio-pci.ids=8086:15f3'\n",
                 'GRUB_CMDLINE_LINUX_DEFAULT="quiet foo=\\"a b\\" vfio-pci.ids=8086:15f3"\n'):
        plan = Node(fake_node, {GRUB: line}).plan(adopt=True)
        assert plan["errors"] == []
        assert sh_parses(plan["adoption"]["texts"][GRUB])


def test_holds_a_crlf_blacklist_of_the_management_driver_is_refused(fake_node):
    """Holds: `blacklist e1000e` with CRLF is still seen as a lockout before the role reboots."""
    plan = Node(fake_node, {"/etc/modprobe.d/blacklist.conf": "blacklist e1000e\r\n"}).plan(
        devices=[{"interface": "enp2s0"}], reboot="if_needed")
    assert [e for e in plan["errors"] if "e1000e" in e]


@pytest.mark.parametrize("text", [
    "options\tvfio-pci\tids=8086:1a1c\n",
    "options vfio-pci ids=8086:1A1C\n",
    "options vfio-pci ids=0x8086:0x1a1c\n",
    "  options vfio-pci ids=8086:1a1c",
])
def test_holds_odd_spellings_of_a_hand_made_ids_line_for_the_management_nic_are_refused(fake_node, text):
    """Holds: tabs, upper case, 0x prefixes, no final newline - the management NIC's hand-made binding is refused."""
    node = Node(fake_node, {"/etc/modprobe.d/vfio.conf": text})
    plan = node.plan(devices=[{"interface": "enp2s0"}], bind_method="address")
    assert [e for e in plan["errors"] if "0000:00:1f.6" in e]


def test_holds_a_hand_made_ids_line_naming_the_management_nic_is_refused_when_adopted(fake_node):
    """Holds: adopting `options vfio_pci ids=<card>,<management NIC>` is refused by the lockout guard."""
    plan = Node(fake_node, {"/etc/modprobe.d/vfio.conf": "options vfio_pci ids=8086:15f3,8086:1a1c\n"}).plan(
        adopt=True)
    assert [e for e in plan["errors"] if "0000:00:1f.6" in e and "management path" in e]


def test_holds_an_install_line_for_vfio_pci_is_refused(fake_node):
    """Holds: `install vfio-pci ... ids=<management NIC>` is refused as a foreign install line."""
    text = "install vfio-pci /sbin/modprobe --ignore-install vfio-pci ids=8086:1a1c\n"
    node = Node(fake_node, {"/etc/modprobe.d/vfio.conf": text})
    plan = node.plan(devices=[{"interface": "enp2s0"}], reboot="if_needed")
    assert [e for e in plan["errors"] if e.startswith("foreign install line for vfio_pci")]


def _adopt_harness():
    """test_adopt.py's Node, which writes with owned_files' own code (loaded under another name)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "plugins" / "module_utils" / "test_adopt.py"
    spec = importlib.util.spec_from_file_location("review19_adopt_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_holds_crlf_and_no_final_newline_files_are_given_back_byte_for_byte(fake_node):
    """Holds: files with CRLF endings and without a final newline are adopted, adopted again without change, and
    given back byte for byte by the rollback."""
    files = {GRUB: 'GRUB_DEFAULT=0\r\nGRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\r\n',
             "/etc/modprobe.d/vfio.conf": "options vfio-pci ids=8086:15f3 disable_vga=1",
             "/etc/modules": "vfio\r\nvfio_pci\r\n"}
    node = _adopt_harness().Node(fake_node, "guide-intel", files)
    before = {p: node.read(p) for p in files}
    _plan, change = node.run(adopt=True)
    assert sorted(change["adopt"]) == sorted(["/etc/vfio-proxmox/adopted.json"] + list(files))
    _plan, change = node.run(adopt=True)
    assert change["adopt"] == []
    plan, _change = node.run(state="absent")
    assert plan["errors"] == []
    assert {p: node.read(p) for p in files} == before


def test_an_adoption_manifest_truncated_to_zero_bytes_makes_the_rollback_forget_the_hand_made_files(fake_node):
    """adopted.json emptied (a stray `>` redirect, a restore tool): the rollback reads 'nothing adopted',
    gives no file back and reports no error - the admin's lines stay commented out (their copies sit unused below
    /etc/vfio-proxmox/adopted) while the role's own configuration is removed: passthrough is gone at the next boot.
    A manifest holding invalid JSON is refused; an empty one is not."""
    harness = _adopt_harness()
    node = harness.Node(fake_node, "guide-intel", harness.GUIDE)
    node.run(adopt=True)
    node.write("/etc/vfio-proxmox/adopted.json", b"")
    plan, _seen = node.plan(state="absent")
    assert plan["give_back"] or [e for e in plan["errors"] if "adopted.json" in e], (plan["give_back"],
                                                                                     plan["errors"])
