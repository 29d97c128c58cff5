"""A GRUB drop-in sourced after the role's that sets GRUB_CMDLINE_LINUX outright drops the role's tokens:
found by discovery, refused by the planner before anything is written."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._grub_overrides import (
    cmdline_overrides,
    sources_after_dropin,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan


def overrides(tmp_path, files: dict[str, str]) -> list[dict]:
    for name, text in files.items():
        path = tmp_path / "etc" / "default" / "grub.d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return cmdline_overrides(TreeReader(), str(tmp_path))


@pytest.mark.parametrize("line", [
    'GRUB_CMDLINE_LINUX="quiet"', "GRUB_CMDLINE_LINUX=''", "export GRUB_CMDLINE_LINUX=console=ttyS0",
    '  GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX_EXTRA quiet"', "true; GRUB_CMDLINE_LINUX=x", "unset GRUB_CMDLINE_LINUX",
])
def test_an_assignment_that_drops_the_value_is_found(tmp_path, line):
    found = overrides(tmp_path, {"zz-admin.cfg": "\n# mine\n" + line})
    assert found == [{"file": "/etc/default/grub.d/zz-admin.cfg", "line": 3, "text": line}]


@pytest.mark.parametrize("line", [
    'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX quiet"', 'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} quiet"',
    'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX:-} quiet"', '# GRUB_CMDLINE_LINUX="quiet"',
    'GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'MY_GRUB_CMDLINE_LINUX="x"',
])
def test_an_append_a_comment_or_another_variable_is_not(tmp_path, line):
    assert overrides(tmp_path, {"zz-admin.cfg": line + "\r\n"}) == []


def test_the_roles_own_drop_in_and_non_cfg_files_are_not_read(tmp_path):
    assert overrides(tmp_path, {"vfio-proxmox.cfg": 'GRUB_CMDLINE_LINUX="x"', "zz.cfg.dpkg-old": "unset "
                                "GRUB_CMDLINE_LINUX"}) == []


def test_an_unreadable_drop_in_is_reported_not_skipped(tmp_path, monkeypatch):
    overrides(tmp_path, {"zz.cfg": "x"})

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("builtins.open", refuse)
    assert cmdline_overrides(TreeReader(), str(tmp_path)) == [
        {"file": "/etc/default/grub.d/zz.cfg", "line": 0, "text": None}]


_ORDER = [("zz.cfg", True), ("vfio-zz.cfg", True), ("vfio-proxmox.cfg.x", True), ("init-select.cfg", False),
          ("Z.cfg", False), ("99-admin.cfg", False), ("vfio-proxmox-0.cfg", False)]


@pytest.mark.parametrize(("name", "after"), _ORDER)
def test_order_is_dashs_byte_order(name, after):
    assert sources_after_dropin("/etc/default/grub.d/" + name) is after


_value = st.text(alphabet=string.ascii_letters + string.digits + " =,._-", max_size=40)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(_value, max_size=4), value=_value, keep=st.booleans(), crlf=st.booleans(),
       final_newline=st.booleans())
def test_every_assignment_is_found_unless_it_keeps_the_value(
        tmp_path_factory, before, value, keep, crlf, final_newline):
    kept = "$GRUB_CMDLINE_LINUX " if keep else ""
    lines = ["# %s" % b for b in before] + ['GRUB_CMDLINE_LINUX="%s%s"' % (kept, value)]
    end = "\r\n" if crlf else "\n"
    text = end.join(lines) + (end if final_newline else "")
    found = overrides(tmp_path_factory.mktemp("grub"), {"zz.cfg": text})
    assert [f["line"] for f in found] == ([] if keep else [len(lines)])


def _with_dropin(name: str, line: str):
    def mutate(profile):
        profile["files"]["/etc/default/grub.d/" + name] = line + "\n"
    return mutate


def test_a_later_drop_in_that_sets_the_variable_is_refused_before_any_write(fake_node):
    node = fake_node("guide-intel", mutate=_with_dropin("zz-admin.cfg", 'GRUB_CMDLINE_LINUX="quiet"'))
    plan = make_plan(gather(run=node.run, which=node.which, **node.roots)["ansible_facts"],
                     {"devices": [{"interface": "enp2s0"}], "boot_loader": "grub"})
    assert plan["errors"] == [
        "/etc/default/grub.d/zz-admin.cfg:1 'GRUB_CMDLINE_LINUX=\"quiet\"' sets GRUB_CMDLINE_LINUX after the role's "
        "drop-in /etc/default/grub.d/vfio-proxmox.cfg, so update-grub would drop %s - keep its value there "
        "(GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX ...\") or rename the file to sort before vfio-proxmox.cfg"
        % " ".join(plan["cmdline_tokens"])]


def test_an_earlier_drop_in_is_fine(fake_node):
    node = fake_node("guide-intel", mutate=_with_dropin("50-admin.cfg", 'GRUB_CMDLINE_LINUX="quiet"'))
    plan = make_plan(gather(run=node.run, which=node.which, **node.roots)["ansible_facts"],
                     {"devices": [{"interface": "enp2s0"}], "boot_loader": "grub"})
    assert plan["errors"] == [] and plan["cmdline_tokens"]
