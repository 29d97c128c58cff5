"""pve_guests against the pvesh test double (tests/sim/pvesh_double.py): what a reboot does to the guests."""

from __future__ import annotations

import json
import subprocess

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._guests import GuestsError, decide
from ansible_collections.vfio.proxmox.plugins.modules import pve_guests
from tests.unit.module_args import patch_module_args


@pytest.fixture
def node(tmp_path, monkeypatch, proxmox_commands):
    pvesh = proxmox_commands["pvesh"]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"nodes": ["pve1", "pve2"], "mapping_pci": {}, "vms": {
        "100": {"node": "pve1", "status": "running", "config": {"name": "firewall", "startup": "order=1"}},
        "101": {"node": "pve1", "status": "running", "config": {"name": "dns", "startup": "order=2"}},
        "102": {"node": "pve1", "status": "stopped", "config": {"name": "old"}},
        "103": {"node": "pve1", "status": "running", "type": "lxc", "config": {"hostname": "proxy"}},
        "200": {"node": "pve2", "status": "running", "config": {"name": "elsewhere"}}}}))
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(state))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    return {"pvesh": pvesh, "state": state}


def run(capsys, node, **args) -> tuple[bool, dict]:
    args = dict({"node": "pve1", "pvesh": node["pvesh"]}, **args)
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        pve_guests.main()
    return exited.value.code != 0, json.loads(capsys.readouterr().out)


def test_refuse_names_every_running_guest_of_this_node_only(capsys, node):
    failed, result = run(capsys, node)
    assert not failed and not result["changed"] and result["proxmox"]
    assert result["refused"] == ["VM 100 (firewall) is running", "VM 101 (dns) is running", "CT 103 (proxy) is running"]
    assert result["stop"] == [] and "VM 102 (old) is stopped: nothing to do" in result["report"]


def test_shutdown_stops_the_running_guests_with_proxmoxs_own_order_and_starts_them_again(capsys, node):
    failed, result = run(capsys, node, policy="shutdown")
    assert not failed and result["refused"] == [] and result["stop"] == [100, 101, 103]
    pvesh = [node["pvesh"], "create", "/nodes/pve1/stopall", "--vms", ",".join(map(str, result["stop"]))]
    subprocess.run(pvesh, check=True)
    state = json.loads(node["state"].read_text())
    # stopall: highest startup order first, no order (103) counts as last of all
    assert state["log"] == ["stop 103", "stop 101", "stop 100"]
    assert state["vms"]["200"]["status"] == "running", "a guest of another node is not touched"
    subprocess.run([node["pvesh"], "create", "/nodes/pve1/startall", "--force", "1", "--vms", "100,101,103"],
                   check=True)
    state = json.loads(node["state"].read_text())
    assert state["log"][3:] == ["start 100", "start 101", "start 103"]
    assert state["vms"]["102"]["status"] == "stopped", "a guest that was stopped stays stopped"


def test_an_ha_managed_guest_refuses_the_shutdown_policy(capsys, node):
    state = json.loads(node["state"].read_text())
    state["vms"]["101"]["ha"] = "started"
    node["state"].write_text(json.dumps(state))
    failed, result = run(capsys, node, policy="shutdown")
    assert not failed and result["refused"] == [
        "VM 101 (dns) is managed by HA (state started): HA, not a shutdown, decides where it runs"]


def test_a_node_without_pvesh_has_no_guests_and_says_so(capsys, node):
    failed, result = run(capsys, node, pvesh="pvesh-that-is-not-installed")
    assert not failed and not result["proxmox"] and result["refused"] == []
    assert result["reason"] == "no pvesh here - not a Proxmox VE node, no guests to consider"


def test_guests_that_cannot_be_read_refuse_the_reboot(capsys, node, tmp_path):
    broken = tmp_path / "pvesh-broken"
    broken.write_text("#!/bin/sh\necho 'ipcc_send_rec[1] failed: Connection refused' >&2\nexit 255\n")
    broken.chmod(0o755)
    failed, result = run(capsys, node, pvesh=str(broken))
    assert failed and "the guests of node pve1 cannot be read, so the reboot is refused" in result["msg"]
    assert "Connection refused" in result["msg"]


def test_an_unknown_policy_is_refused_by_name():
    with pytest.raises(GuestsError, match="passthrough_reboot_guests: 'migrate-later' is not one of refuse, shutdown"):
        decide([], "migrate-later")
