"""VF counts set at boot by ifupdown post-up lines and udev rules (discovery/_boot_numvfs.py): every writing line
is found with what it names, at its line; the SR-IOV planner refuses a PF one of them may set."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._boot_numvfs import boot_numvfs_lines
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from tests.unit.review19.review19_helpers import PF, facts, inputs


def lines_of(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return boot_numvfs_lines(str(tmp_path))


def test_a_post_up_line_is_found_with_its_stanza_and_a_udev_rule_with_its_address(tmp_path):
    found, problem = lines_of(tmp_path, {
        "/etc/network/interfaces": "auto lo\n\niface enp4s0f0np0 inet manual\n"
                                   "  # post-up echo 9 > /sys/class/net/$IFACE/device/sriov_numvfs\n"
                                   "  post-up echo 4 > /sys/class/net/$IFACE/device/sriov_numvfs\n",
        "/etc/udev/rules.d/70-sriov.rules": 'ACTION=="add", KERNEL=="0000:04:00.1", ATTR{sriov_numvfs}="2"\r\n',
        "/etc/udev/rules.d/README": "sriov_numvfs is not a rule here\n"})
    assert problem is None
    assert found == [
        {"file": "/etc/network/interfaces", "line": 5, "text": "post-up echo 4 > /sys/class/net/$IFACE/device/"
         "sriov_numvfs", "addresses": [], "interfaces": ["enp4s0f0np0"]},
        {"file": "/etc/udev/rules.d/70-sriov.rules", "line": 1, "text": 'ACTION=="add", KERNEL=="0000:04:00.1", '
         'ATTR{sriov_numvfs}="2"', "addresses": ["0000:04:00.1"], "interfaces": []}]


def test_an_unreadable_file_is_said_not_taken_for_none(tmp_path, monkeypatch):
    lines_of(tmp_path, {"/etc/network/interfaces": "iface x inet manual\n"})
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path).endswith("interfaces"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", refuse)
    found, problem = boot_numvfs_lines(str(tmp_path))
    assert found == [] and problem.startswith("cannot read ") and "Permission denied" in problem


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=\"{}$/.:_- \t#", max_size=30)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.lists(_word, max_size=6), where=st.integers(0, 6), crlf=st.booleans(), final_newline=st.booleans())
def test_every_writing_line_is_found_at_its_line_and_nothing_else(
        tmp_path_factory, noise, where, crlf, final_newline):
    noise = [n for n in noise if "sriov_numvfs" not in n]
    lines = list(noise)
    lines.insert(min(where, len(lines)), "post-up echo 3 > /sys/bus/pci/devices/0000:04:00.0/sriov_numvfs")
    end = "\r\n" if crlf else "\n"
    root = tmp_path_factory.mktemp("etc")
    text = end.join(lines) + (end if final_newline else "")
    found, problem = lines_of(root, {"/etc/network/interfaces.d/sriov": text})
    assert problem is None
    assert [(f["line"], f["addresses"]) for f in found] == [(min(where, len(noise)) + 1, ["0000:04:00.0"])]
    assert os.path.basename(found[0]["file"]) == "sriov"


def _with(path: str, text: str):
    def mutate(profile):
        profile["files"][path] = text
    return mutate


def test_a_line_for_another_pf_is_no_conflict_and_one_naming_none_refuses(fake_node):
    other = _with("/etc/udev/rules.d/70-sriov.rules", 'KERNEL=="0000:05:00.0", ATTR{sriov_numvfs}="2"\n')
    plan = plan_node(facts(fake_node, mutate=other), inputs(sriov=[{"address": PF, "vfs": 2, "vf_macs": "keep"}]))
    assert not [e for e in plan["errors"] if "70-sriov.rules" in e], plan["errors"]
    any_pf = _with("/etc/udev/rules.d/70-sriov.rules", 'ENV{ID_NET_DRIVER}=="i40e", ATTR{device/sriov_numvfs}="4"\n')
    plan = plan_node(facts(fake_node, mutate=any_pf), inputs(sriov=[{"address": PF, "vfs": 2, "vf_macs": "keep"}]))
    assert [e for e in plan["errors"] if "70-sriov.rules:1" in e and "names no PF, so it may set" in e], plan["errors"]
