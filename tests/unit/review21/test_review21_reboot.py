"""Review 21 (adversarial): cluster-safe rolling reboots - each test fails for the defect it names.

Against the Proxmox TEST DOUBLE tests/sim/pvesh_double.py (not Proxmox), the way
tests/unit/plugins/modules/test_pve_evacuate.py drives it; where the double does not show what Proxmox does,
a small wrapper in front of it does, citing the Proxmox source it follows.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import pve_health
from tests.unit.pve_cluster import call, edit, evacuate, guests, read_state, where

DOUBLE = Path(__file__).resolve().parents[2] / "sim" / "pvesh_double.py"


@pytest.fixture
def cluster(tmp_path, monkeypatch, proxmox_commands):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({
        "nodes": ["pve1", "pve2", "pve3"], "mapping_pci": {},
        "storage": {"local-lvm": {"shared": 0}, "ceph": {"shared": 1}, "local": {"shared": 0}},
        "vms": {
            "100": {"node": "pve1", "status": "running", "config": {"name": "web", "scsi0": "ceph:vm-100-disk-0"}},
            "101": {"node": "pve1", "status": "running", "config": {"name": "db", "scsi0": "ceph:vm-101-disk-0"},
                    "ha": "started"},
            "102": {"node": "pve1", "status": "running", "type": "lxc",
                    "config": {"hostname": "proxy", "rootfs": "ceph:subvol-102-disk-0"}},
            "200": {"node": "pve2", "status": "running", "config": {"name": "busy"}},
            "201": {"node": "pve2", "status": "running", "config": {"name": "busy2"}}}}))
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(state))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    return dict(proxmox_commands, state=state, tmp=tmp_path)


def wrapper(cluster, name: str, body: str) -> str:
    """A `pvesh` that runs `body` (sh) and then the double."""
    path = cluster["tmp"] / name
    path.write_text('#!/bin/sh\n%s\nexec "%s" "%s" "$@"\n' % (body, sys.executable, DOUBLE))
    path.chmod(0o755)
    return str(path)


# 1 ------------------------------------------------------------------------------------------------------------
def test_real_pvesh_prints_the_migration_task_log_before_the_upid(capsys, cluster):
    """Real `pvesh create .../migrate` runs the worker in the foreground and copies its log to stdout before it
    prints the result: pve-common src/PVE/RESTEnvironment.pm:529 ($sync = type 'cli' && !$background),
    :733-735 ($tee_worker prints the worker's output, :478 `print $readbuf`), and pve-manager
    PVE/CLI/pvesh.pm:46 (setup_default_cli_env) + :459 (print_api_result after the handler returned). The
    double prints only the UPID; Pvesh._call json.loads the whole stdout."""
    pvesh = wrapper(cluster, "pvesh-real-cli", 'case "$1 $2" in create\\ */migrate)\n'
                    '  echo "2026-12-03 20:00:00 starting migration of VM to node \'pve3\' (10.0.0.3)"\n'
                    '  echo "2026-12-03 20:00:05 migration finished successfully (duration 00:00:05)";;\nesac')
    decided = guests(capsys, cluster)
    failed, result = evacuate(capsys, cluster, "evacuated", decided, pvesh=pvesh)
    # the VM did move (the task succeeded) - but the evacuation fails, leaving pve1 in HA maintenance
    assert not failed, result["msg"]


# 2 ------------------------------------------------------------------------------------------------------------
def test_an_ha_managed_vm_with_a_passed_through_device_refuses_before_anything_moves(capsys, cluster):
    """An HA-managed VM with hostpci0 cannot be moved by HA either (qemu-server src/PVE/QemuMigrate/Helpers.pm:108
    check_local_resources, QemuMigrate.pm:280 "can't migrate VM which uses local devices"); pve_guests never
    reads its migration preconditions and plans HA maintenance, which then never empties the node."""
    edit(cluster, lambda s: s["vms"]["101"]["config"].update(hostpci0="0000:02:00.0,pcie=1"))
    decided = guests(capsys, cluster)
    assert any("VM 101" in line for line in decided["refused"]), decided["report"]


# 3 ------------------------------------------------------------------------------------------------------------
def test_a_reboot_that_would_cost_the_cluster_its_quorum_is_refused(capsys, cluster):
    """pve3 is down; pve1 + pve2 keep 2 of 3 votes. Rebooting pve1 leaves pve2 alone without quorum - with HA
    armed its watchdog fences it (pve-ha-manager: the LRM self-fences on quorum loss), killing every guest."""
    edit(cluster, lambda s: s.update(offline=["pve3"]))
    failed, result = call(pve_health, capsys, {"pvesh": cluster["pvesh"],
                                               "corosync_quorumtool": cluster["corosync-quorumtool"]})
    assert not failed and result["quorate"]
    assert result["refused"] != [], "rebooting pve1 now leaves 1 of 3 nodes: quorum lost"


def test_a_qdevice_keeps_quorum_so_the_reboot_may_go_on(capsys, cluster):
    """Two nodes and a QDevice (one vote): without pve1, pve2 and the QDevice keep 2 of the 3 votes."""
    edit(cluster, lambda s: s.update(nodes=["pve1", "pve2"], qdevice_votes=1))
    failed, result = call(pve_health, capsys, {"pvesh": cluster["pvesh"],
                                               "corosync_quorumtool": cluster["corosync-quorumtool"]})
    assert not failed and result["refused"] == [] and result["votes"] == {"total": 3, "quorum": 2, "local": 1}


def test_votes_that_cannot_be_read_refuse_the_reboot(capsys, cluster):
    failed, result = call(pve_health, capsys, {"pvesh": cluster["pvesh"], "corosync_quorumtool": "/bin/false"})
    assert failed and "the cluster's votes cannot be read, so the reboot is refused" in result["msg"]


# 4 ------------------------------------------------------------------------------------------------------------
def test_a_failed_evacuation_does_not_leave_the_node_in_ha_maintenance(capsys, cluster):
    """The second move fails (a bind mount added after the decision); pve_evacuate fails after it entered HA
    maintenance and moved VM 100 - and nothing (module or role: before_reboot.yml has no rescue) undoes it."""
    decided = guests(capsys, cluster)
    edit(cluster, lambda s: s["vms"]["102"]["config"].update(mp0="/srv/data,mp=/data"))
    failed, result = evacuate(capsys, cluster, "evacuated", decided)
    assert failed
    state = read_state(cluster)
    assert (state["ha_nodes"].get("pve1"), where(cluster)["100"]) == ("online", "pve1"), result["msg"]


# 5 ------------------------------------------------------------------------------------------------------------
def test_a_container_with_a_passed_through_device_is_refused(capsys, cluster):
    """A container with `dev0: /dev/dri/renderD128` (a GPU passed to it) - pve-container does not check local
    resources before a migration (src/PVE/LXC/Migrate.pm:114 "todo: test if VM uses local resources"), so the
    collection must: in restart mode the CT is stopped, moved, and starts on a node without that device."""
    edit(cluster, lambda s: s["vms"]["102"]["config"].update(dev0="/dev/dri/renderD128,gid=104"))
    decided = guests(capsys, cluster)
    assert any("CT 102" in line for line in decided["refused"]), decided["report"]


# 6 ------------------------------------------------------------------------------------------------------------
def test_guests_are_not_sent_to_a_node_in_ha_maintenance(capsys, cluster):
    """pve3 is in HA maintenance (another admin is about to reboot it): still `online` in /cluster/status, and
    the emptiest node - pve_guests sends VM 100 and CT 102 there, where that reboot stops them."""
    edit(cluster, lambda s: s.update(ha_nodes={"pve3": "maintenance"}))
    decided = guests(capsys, cluster)
    assert [m["target"] for m in decided["migrate"] if m["target"] == "pve3"] == []


# 7 ------------------------------------------------------------------------------------------------------------
def test_a_local_cloud_init_drive_does_not_refuse_a_live_migration(capsys, cluster):
    """Proxmox live-migrates a VM whose cloud-init drive is on local storage: qemu-server src/PVE/QemuMigrate.pm
    :474-476 (a vm-N-cloudinit CD-ROM is 'generated'), :594-598 (a generated volume is copied offline while the VM
    runs). pve_guests refuses it as a "local CD-ROM"."""
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(ide2="local-lvm:vm-100-cloudinit,media=cdrom"))
    assert guests(capsys, cluster)["refused"] == []


def test_a_local_tpm_state_does_not_refuse_a_live_migration(capsys, cluster):
    """tpmstate0 on local storage is 'generated' (qemu-server src/PVE/QemuMigrate.pm:447) and migrated offline
    while the VM runs (:594-598); live migration needs no with-local-disks for it (:540-544 only for 'attached').
    pve_guests refuses it as a "local disk"."""
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(tpmstate0="local-lvm:vm-100-disk-1,version=v2.0"))
    assert guests(capsys, cluster)["refused"] == []


# 8 ------------------------------------------------------------------------------------------------------------
def test_the_wait_for_the_cluster_times_out_even_when_pvesh_hangs(capsys, cluster):
    """After a reboot pmxcfs may hang and `pvesh get /cluster/status` with it; pve_health(wait, timeout=1) runs
    pvesh without a timeout (Pvesh._call -> run_command), so it waits as long as pvesh hangs - here 12 s, on a
    real node forever."""
    pvesh = wrapper(cluster, "pvesh-hangs", '[ "$2" = /cluster/status ] && sleep 12')
    started = time.monotonic()
    failed, result = call(pve_health, capsys, {"pvesh": pvesh, "wait": True, "nodes": ["pve1", "pve2", "pve3"],
                                               "timeout": 1, "interval": 0.1})
    took = time.monotonic() - started
    assert took < 6, "pve_health(wait, timeout=1) took %.0f s (%s)" % (took, result.get("msg"))


# 9 ------------------------------------------------------------------------------------------------------------
def test_a_container_locked_by_a_backup_is_refused_before_anything_moves(capsys, cluster):
    """CT 102 is being backed up (`lock: backup` in its config, which pve_guests reads). pve-container refuses to
    migrate a locked container - src/PVE/LXC/Migrate.pm:48 check_lock, inside the worker - so the evacuation
    fails only after pve1 entered HA maintenance and VM 100 moved (see test 4)."""
    edit(cluster, lambda s: s["vms"]["102"]["config"].update(lock="backup"))
    decided = guests(capsys, cluster)
    assert any("CT 102" in line for line in decided["refused"]), decided["report"]


# 10 -----------------------------------------------------------------------------------------------------------
def test_an_ha_guest_a_strict_node_affinity_rule_pins_here_is_refused(capsys, cluster):
    """vm:101 has a strict node-affinity rule for pve1 only (pve-ha-manager src/PVE/HA/Rules/NodeAffinity.pm:75
    "restricted to the defined nodes"). In maintenance pve1 is not an online node for HA, so
    Manager.pm:330 select_service_node returns undef and the service stays: HA maintenance never empties pve1
    and the run waits passthrough_reboot_settle_timeout, then fails with pve1 left in maintenance. pve_guests
    never reads /cluster/ha/rules (nor the older /cluster/ha/groups)."""
    rules = json.dumps([{"rule": "pin-db", "type": "node-affinity", "resources": "vm:101", "nodes": "pve1",
                         "strict": 1}])
    cluster["pvesh"] = wrapper(cluster, "pvesh-rules", "[ \"$1 $2\" = 'get /cluster/ha/rules' ] && "
                               "{ echo '%s'; exit 0; }" % rules)
    decided = guests(capsys, cluster)
    assert any("VM 101" in line for line in decided["refused"]), decided["report"]


# 11 -----------------------------------------------------------------------------------------------------------
def test_a_ceph_with_degraded_placement_groups_refuses_the_next_reboot(capsys, cluster):
    """Ceph is HEALTH_WARN because the node rebooted before still recovers (PG_DEGRADED) - a cluster whose
    health was already WARN before (any benign warning) passes both the after-reboot wait (WARN back to WARN)
    and the next node's check (only HEALTH_ERR refuses): the next node takes a second copy of the degraded
    placement groups down and I/O of every guest on them blocks (size 3 / min_size 2)."""
    status = json.dumps({"health": {"status": "HEALTH_WARN", "checks": {
        "PG_DEGRADED": {"severity": "HEALTH_WARN",
                        "summary": {"message": "Degraded data redundancy: 1204/36120 objects degraded "
                                               "(3.333%), 42 pgs degraded"}}}},
        "pgmap": {"degraded_objects": 1204, "degraded_total": 36120}})
    edit(cluster, lambda s: s.update(ceph={"health": "HEALTH_WARN", "flags": []}))
    pvesh = wrapper(cluster, "pvesh-degraded", "[ \"$1 $2\" = 'get /cluster/ceph/status' ] && "
                    "{ echo '%s'; exit 0; }" % status)
    failed, result = call(pve_health, capsys, {"pvesh": pvesh, "corosync_quorumtool": cluster["corosync-quorumtool"]})
    assert not failed and result["ceph"]["health"] == "HEALTH_WARN"
    assert result["refused"] != [], "42 placement groups are degraded"


# 12 -----------------------------------------------------------------------------------------------------------
def test_no_allowed_node_names_why_proxmox_disallows_the_others(capsys, cluster):
    """VM 100 uses a live-migration-capable mapping that exists on pve1 only: Proxmox lists pve2 and pve3 under
    not_allowed_nodes with unavailable-resources (qemu-server src/PVE/API2/Qemu.pm:5448-5452). The refusal says
    "no online node to migrate it to (online: pve2, pve3)" - two online nodes named as if they were no nodes,
    and not the mapping that keeps it there."""
    edit(cluster, lambda s: s["mapping_pci"].update(
        vf={"map": ["node=pve1,path=0000:03:00.0,id=8086:10d3"], "live-migration-capable": 1}))
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(hostpci0="mapping=vf"))
    refused = guests(capsys, cluster)["refused"]
    assert refused and "hostpci0" in refused[0], refused


# 13 -----------------------------------------------------------------------------------------------------------
def test_a_container_is_not_sent_to_a_node_without_its_storage(capsys, cluster):
    """Storage `ceph` (CT 102's rootfs) is enabled on pve1 and pve2 only (storage.cfg `nodes`). pve-container
    checks the target - src/PVE/LXC/Migrate.pm:100-107 storage_check_enabled(..., $self->{node}) - so the move
    to pve3 fails inside the evacuation (after HA maintenance and VM 100's move). pve_guests picks a container's
    target from the online nodes alone (allowed: None), reading no storage."""
    storage = json.dumps([{"storage": "ceph", "type": "rbd", "shared": 1, "content": "images,rootdir",
                           "nodes": "pve1,pve2"},
                          {"storage": "local-lvm", "type": "lvmthin", "content": "images,rootdir"},
                          {"storage": "local", "type": "dir", "content": "iso,vztmpl,backup"}])
    cluster["pvesh"] = wrapper(cluster, "pvesh-storage", "[ \"$1 $2\" = 'get /storage' ] && "
                               "{ echo '%s'; exit 0; }" % storage)
    decided = guests(capsys, cluster)
    assert [m["target"] for m in decided["migrate"] if m["vmid"] == 102] != ["pve3"], decided["report"]


# 14 -----------------------------------------------------------------------------------------------------------
def test_a_container_on_local_storage_is_refused_like_a_vm_on_local_storage(capsys, cluster):
    """The feature refuses a guest with a local disk ("moving it would copy the disk"); for a container on
    local-lvm pve_guests plans a restart-mode migration: pve-container copies the volume while the container is
    shut down (src/PVE/LXC/Migrate.pm:93-96 local volume only in restart mode, :164-172 shutdown first) - and
    back again after the reboot: the container is down for two full disk copies, and a copy longer than
    passthrough_reboot_settle_timeout fails the evacuation mid-migration."""
    edit(cluster, lambda s: s["vms"]["102"]["config"].update(rootfs="local-lvm:vm-102-disk-0,size=200G"))
    decided = guests(capsys, cluster)
    assert any("CT 102" in line for line in decided["refused"]), decided["report"]


# 15 -----------------------------------------------------------------------------------------------------------
def test_a_failed_wait_after_the_reboot_still_brings_the_guests_back(capsys, cluster):
    """roles/passthrough/tasks/reboot.yml: the waits for quorum and for Ceph's former health come before
    "Leave HA maintenance and bring the migrated guests back" and "Start the guests the reboot shut down", with
    no block/always. Ceph recovery after a node's OSDs come back often takes longer than the settle timeout
    (HEALTH_OK before -> HEALTH_WARN for a while): the turn fails and the node's guests stay shut down (shutdown
    policy) or away, with the node left in HA maintenance - and Ceph's noout, set cluster-wide for the reboot,
    is never cleared when the quorum wait fails (failed OSDs are then never marked out anywhere)."""
    import yaml
    tasks = yaml.safe_load((Path(__file__).resolve().parents[3] / "roles" / "passthrough" / "tasks" /
                            "reboot.yml").read_text())

    def brings_back(task: dict) -> bool:
        text = json.dumps(task)
        return "startall" in text or '"state": "returned"' in text or "noout" in text

    always = [t for block in tasks if isinstance(block, dict) and "block" in block
              for t in (block.get("always") or []) + (block.get("rescue") or [])]
    assert any(brings_back(t) for t in always), \
        "guests are brought back only when every wait before succeeded: %s" % [t.get("name") for t in tasks]


# 16 (the double) ----------------------------------------------------------------------------------------------
def test_double_ha_maintenance_leaves_a_stopped_ha_service_where_it_is(cluster):
    """pve-ha-manager src/PVE/HA/Manager.pm:1315-1318 (next_state_stopped: a service whose requested state is
    `stopped` just returns - it is not moved off a node in maintenance; only next_state_started records
    maintenance_node, :1384-1388). The double's ha_maintenance moves every HA guest on the node and gives it a
    maintenance_node, so a stopped HA guest looks moved and "back after" in every test."""
    import subprocess
    edit(cluster, lambda s: s["vms"].update({"103": {"node": "pve1", "status": "stopped", "ha": "stopped",
                                                     "config": {"name": "cold", "scsi0": "ceph:vm-103"}}}))
    subprocess.run([cluster["ha-manager"], "crm-command", "node-maintenance", "enable", "pve1"], check=True)
    vm = read_state(cluster)["vms"]["103"]
    assert (vm["node"], vm.get("maintenance_node")) == ("pve1", None)


def test_double_migrate_precondition_refuses_a_locked_vm(cluster):
    """qemu-server src/PVE/API2/Qemu.pm:5410 (migrate_vm_precondition: PVE::QemuConfig->check_lock dies
    "VM is locked (backup)"). The double answers the precondition of a locked VM as if it could move."""
    import subprocess
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(lock="backup"))
    done = subprocess.run([cluster["pvesh"], "get", "/nodes/pve1/qemu/100/migrate"], capture_output=True, text=True,
                          check=False)
    assert done.returncode != 0 and "locked" in done.stderr, done.stdout
