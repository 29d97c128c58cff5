"""pve_health against the pvesh test double: quorum, nodes online and Ceph, before and after a reboot."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._health import unmet
from ansible_collections.vfio.proxmox.plugins.modules import pve_health
from tests.unit.module_args import patch_module_args


@pytest.fixture
def cluster(tmp_path, monkeypatch, proxmox_commands):
    pvesh = proxmox_commands["pvesh"]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"nodes": ["pve1", "pve2", "pve3"], "mapping_pci": {},
                                 "ceph": {"health": "HEALTH_OK", "flags": []}}))
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(state))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    return {"pvesh": pvesh, "state": state, "quorumtool": proxmox_commands["corosync-quorumtool"]}


def run(capsys, cluster, **args) -> tuple[bool, dict]:
    base = {"pvesh": cluster["pvesh"], "corosync_quorumtool": cluster["quorumtool"]}
    with patch_module_args(dict(base, **args)), pytest.raises(SystemExit) as exited:
        pve_health.main()
    return exited.value.code != 0, json.loads(capsys.readouterr().out)


def change(cluster, **values) -> None:
    state = json.loads(cluster["state"].read_text())
    state.update(values)
    cluster["state"].write_text(json.dumps(state))


def test_a_healthy_cluster_may_reboot_a_node(capsys, cluster):
    failed, result = run(capsys, cluster)
    assert not failed and result["quorate"] and result["online"] == ["pve1", "pve2", "pve3"]
    assert result["ceph"] == {"health": "HEALTH_OK", "noout": False, "redundancy": []} and result["refused"] == []


def test_no_quorum_or_a_ceph_in_error_refuses_the_reboot(capsys, cluster):
    change(cluster, offline=["pve2", "pve3"], ceph={"health": "HEALTH_ERR", "flags": ["noout"]})
    failed, result = run(capsys, cluster)
    assert not failed and result["refused"] == [
        "the cluster is not quorate (nodes offline: pve2, pve3) - a reboot now could leave it without a majority",
        "Ceph is in HEALTH_ERR - a reboot now could take the cluster's storage down"]
    assert result["ceph"]["noout"]


def test_a_cluster_without_ceph_has_none(capsys, cluster):
    state = json.loads(cluster["state"].read_text())
    del state["ceph"]
    cluster["state"].write_text(json.dumps(state))
    failed, result = run(capsys, cluster)
    assert not failed and result["ceph"] is None and result["refused"] == []


def test_the_wait_ends_when_the_node_and_ceph_are_back(capsys, cluster):
    change(cluster, offline=["pve1"], ceph={"health": "HEALTH_WARN", "flags": ["noout"]})

    def come_back():
        time.sleep(1.0)
        change(cluster, offline=[], ceph={"health": "HEALTH_OK", "flags": ["noout"]})
    threading.Thread(target=come_back, daemon=True).start()
    failed, result = run(capsys, cluster, wait=True, nodes=["pve1", "pve2", "pve3"], ceph_health="HEALTH_OK",
                         timeout=30, interval=0.2)
    assert not failed and result["online"] == ["pve1", "pve2", "pve3"], result.get("msg")
    assert 0.5 < result["waited"] < 30


def test_the_wait_fails_after_its_timeout_naming_what_it_waited_for(capsys, cluster):
    change(cluster, offline=["pve3"], ceph={"health": "HEALTH_WARN", "flags": []})
    # The timeout is also each pvesh call's limit (min(30, timeout)): with 1 s, a double's call that waits for a
    # CPU longer than that on a loaded CI machine is killed and read as "the API does not answer" (seen in the
    # background lane). 3 s leaves a call room and still ends the wait in seconds.
    failed, result = run(capsys, cluster, wait=True, nodes=["pve1", "pve2", "pve3"], ceph_health="HEALTH_OK",
                         timeout=3, interval=0.2)
    # The seconds are measured: at least the timeout, more on a busy machine (each pvesh call is a process).
    waited = re.search(r"waited (\d+) s for the cluster to be quorate with pve1, pve2, pve3 online and Ceph back to "
                       r"HEALTH_OK; still not back - node pve3 not online; Ceph is HEALTH_WARN, was HEALTH_OK before "
                       r"the reboot", result["msg"])
    assert failed and waited and int(waited.group(1)) >= 3, result["msg"]


def test_a_ceph_warning_before_accepts_a_warning_or_better_after():
    status = {"quorate": True, "online": ["pve1"], "ceph": {"health": "HEALTH_WARN"}}
    assert unmet(status, ["pve1"], "HEALTH_WARN") == []
    assert unmet(dict(status, ceph={"health": "HEALTH_ERR"}), ["pve1"], "HEALTH_WARN") == [
        "Ceph is HEALTH_ERR, was HEALTH_WARN before the reboot"]


def test_a_node_without_pvesh_has_nothing_to_wait_for(capsys, cluster):
    failed, result = run(capsys, cluster, pvesh="pvesh-not-here", wait=True, nodes=["pve9"])
    assert not failed and not result["proxmox"] and "not a Proxmox VE node" in result["reason"]


def test_the_wait_after_a_reboot_lasts_until_ceph_has_all_its_copies(capsys, cluster, tmp_path):
    """Ceph WARN before and WARN after, but placement groups still degraded: not back yet."""
    status = json.dumps({"health": {"status": "HEALTH_WARN", "checks": {
        "PG_DEGRADED": {"severity": "HEALTH_WARN", "summary": {"message": "42 pgs degraded"}}}}})
    wrapper = tmp_path / "pvesh-degraded"
    wrapper.write_text("#!/bin/sh\n[ \"$1 $2\" = 'get /cluster/ceph/status' ] && { echo '%s'; exit 0; }\n"
                       "exec %s \"$@\"\n" % (status, cluster["pvesh"]))
    wrapper.chmod(0o755)
    failed, result = run(capsys, cluster, pvesh=str(wrapper), wait=True, nodes=["pve1"], ceph_health="HEALTH_WARN",
                         timeout=0, interval=0.1)
    assert failed and "Ceph is still recovering - PG_DEGRADED (42 pgs degraded)" in result["msg"]
