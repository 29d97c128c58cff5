"""The pci_facts module entry point, in normal and check mode."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils import basic

from ansible_collections.vfio.proxmox.plugins.modules import pci_facts
from tests.unit.module_args import patch_module_args


def run_main(monkeypatch, capsys, node, **extra):
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, argv, check_rc=False: node.run(argv))
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: node.which(name))
    with patch_module_args(dict(node.roots, **extra)), pytest.raises(SystemExit) as exited:
        pci_facts.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("check_mode", [False, True])
def test_main_reports_facts_and_never_changes(monkeypatch, capsys, fake_node, check_mode):
    node = fake_node("bridge-trap")
    extra = {"connection_address": "192.0.2.70", "classes": ["02"]}
    if check_mode:
        extra["_ansible_check_mode"] = True
    code, out = run_main(monkeypatch, capsys, node, **extra)
    assert code == 0
    assert out["changed"] is False
    assert out["check_mode"] is check_mode  # the role reads check mode from here (task-level too)
    assert "failed" not in out
    facts = out["ansible_facts"]
    assert [d["address"] for d in facts["vfio_pci_devices"]] == ["0000:00:1f.6", "0000:02:00.0"]
    assert facts["vfio_host"]["management_interfaces"] == [
        {"interface": "vmbr0", "reasons": ["default route (ipv4)", "holds connection address 192.0.2.70"]}]
    assert facts["vfio_iommu_groups"] == {"0": ["0000:00:00.0"], "9": ["0000:00:1f.6"], "11": ["0000:01:00.0"],
                                          "12": ["0000:02:00.0"]}
    assert [c[1:] for c in node.calls] == [
        ["-j", "addr", "show"], ["-j", "-4", "route", "show", "default"],
        ["-j", "-6", "route", "show", "default"]]  # no dmesg, no proxmox-boot-tool on this node
    # No SR-IOV device here: the VF settings (ip -d link) are not read, and the facts say so.
    assert facts["vfio_host"]["link_macs"] is None
    assert facts["vfio_host"]["link_macs_error"] == "no SR-IOV device on this node: not read"


def test_main_turns_tree_problems_into_warnings(monkeypatch, capsys, fake_node):
    node = fake_node("guide-intel")
    node.commands["ip -j addr show"] = "garbage"
    code, out = run_main(monkeypatch, capsys, node)
    assert code == 0
    # ansible-core 2.19+ serialises warnings as WarningSummary events.
    messages = [w["event"]["msg"] if isinstance(w, dict) else w for w in out["warnings"]]
    assert any(m.startswith("cannot parse output of /usr/sbin/ip -j addr show") for m in messages)


def test_main_rejects_unknown_options(monkeypatch, capsys, fake_node):
    code, out = run_main(monkeypatch, capsys, fake_node("guide-intel"), bogus=1)
    assert code == 1
    assert out["failed"] is True
    assert "bogus" in out["msg"]


def test_main_takes_the_connection_address_from_ssh_connection(monkeypatch, capsys, fake_node):
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.7 51234 192.0.2.70 22")
    code, out = run_main(monkeypatch, capsys, fake_node("bridge-trap"))
    assert code == 0
    host = out["ansible_facts"]["vfio_host"]
    assert host["connection_address"] == "192.0.2.70"
    assert {"interface": "vmbr0", "reasons": ["default route (ipv4)", "holds connection address 192.0.2.70"]} in (
        host["management_interfaces"])


def test_main_without_ssh_has_no_connection_address(monkeypatch, capsys, fake_node):
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    code, out = run_main(monkeypatch, capsys, fake_node("bridge-trap"))
    assert code == 0
    assert out["ansible_facts"]["vfio_host"]["connection_address"] is None


def test_files_are_reported_in_the_same_call(monkeypatch, capsys, fake_node, tmp_path):
    node = fake_node("guide-intel")
    owned, missing = tmp_path / "vfio-proxmox.conf", tmp_path / "absent"
    owned.write_text("options vfio-pci ids=8086:15f3\n")
    code, out = run_main(monkeypatch, capsys, node, files=[str(owned), str(missing)], read_files=[str(owned)])
    assert code == 0 and out["changed"] is False
    assert out["files"][str(missing)] == {"path": str(missing), "exists": False}
    assert out["files"][str(owned)]["content"] == "options vfio-pci ids=8086:15f3\n"
    assert out["files"][str(owned)]["checksum"] == "971c482436f151f208152f5b32d805f119b162e2"  # sha1 of the text


def test_a_relative_file_path_fails_naming_it(monkeypatch, capsys, fake_node):
    code, out = run_main(monkeypatch, capsys, fake_node("guide-intel"), files=["etc/modprobe.d"])
    assert (code, out["msg"]) == (1, "pci_facts: paths must be absolute, got etc/modprobe.d")
