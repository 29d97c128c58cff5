"""The migrate policy end to end against the Proxmox test double (tests/sim/pvesh_double.py - not Proxmox;
its migration, task and HA rules cite qemu-server, pve-container and pve-ha-manager): pve_guests decides,
pve_evacuate moves the guests away before the reboot and back after it, on a three-node cluster."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import pve_evacuate
from tests.unit.pve_cluster import call, edit, evacuate, guests, where


@pytest.fixture
def cluster(tmp_path, monkeypatch, proxmox_commands):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({
        "nodes": ["pve1", "pve2", "pve3"], "mapping_pci": {
            "nic": {"map": ["node=pve1,path=0000:02:00.0,id=8086:10d3,iommugroup=12"]},
            "vf": {"map": ["node=pve1,path=0000:03:00.0,id=8086:10d3", "node=pve2,path=0000:03:00.0,id=8086:10d3"],
                   "live-migration-capable": 1}},
        "storage": {"local-lvm": {"shared": 0}, "ceph": {"shared": 1}, "local": {"shared": 0}},
        "vms": {
            "100": {"node": "pve1", "status": "running", "config": {"name": "web", "scsi0": "ceph:vm-100-disk-0"}},
            "101": {"node": "pve1", "status": "running", "config": {"name": "db", "scsi0": "ceph:vm-101-disk-0"},
                    "ha": "started"},
            "102": {"node": "pve1", "status": "running", "type": "lxc",
                    "config": {"hostname": "proxy", "rootfs": "ceph:subvol-102-disk-0"}},
            "103": {"node": "pve1", "status": "stopped", "config": {"name": "cold", "scsi0": "local-lvm:vm-103"}},
            "200": {"node": "pve2", "status": "running", "config": {"name": "busy"}},
            "201": {"node": "pve2", "status": "running", "config": {"name": "busy2"}}}}))
    monkeypatch.setenv("PVESH_DOUBLE_STATE", str(state))
    monkeypatch.setenv("PVESH_DOUBLE_NODE", "pve1")
    return dict(proxmox_commands, state=state)


def test_migrate_moves_every_running_guest_away_and_back(capsys, cluster):
    decided = guests(capsys, cluster)
    assert decided["refused"] == []
    assert decided["ha_maintenance"] is True
    # pve2 runs two guests, pve3 none: both go to pve3, still the lighter node after the first move
    moves = [(m["vmid"], m["target"], m["mode"]) for m in decided["migrate"]]
    assert moves == [(100, "pve3", "online"), (102, "pve3", "restart")]
    assert "VM 101 (db) is HA-managed: HA moves it away when pve1 enters HA maintenance, and back after" \
        in decided["report"]
    failed, result = evacuate(capsys, cluster, "evacuated", decided)
    assert not failed and result["changed"], result
    # HA chose for VM 101 itself (the double's CRM: the online node with the fewest HA services)
    assert where(cluster) == {"100": "pve3", "101": "pve2", "102": "pve3", "103": "pve1", "200": "pve2",
                              "201": "pve2"}
    assert "entered HA maintenance of pve1" in result["done"]
    failed, again = evacuate(capsys, cluster, "evacuated", decided)
    assert not failed and not again["changed"], "a second run is a no-op"
    failed, result = evacuate(capsys, cluster, "returned", decided)
    assert not failed and result["changed"], result
    assert where(cluster) == {"100": "pve1", "101": "pve1", "102": "pve1", "103": "pve1", "200": "pve2",
                              "201": "pve2"}
    state = json.loads(cluster["state"].read_text())
    assert state["ha_nodes"]["pve1"] == "online"
    assert state["vms"]["100"]["status"] == "running" and state["vms"]["102"]["status"] == "running"


def test_a_vm_with_a_passed_through_device_cannot_migrate_and_is_named(capsys, cluster):
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(hostpci0="0000:02:00.0,pcie=1"))
    decided = guests(capsys, cluster)
    assert decided["refused"] == ["VM 100 (web) cannot be migrated: it uses local device hostpci0"]


def test_a_mapped_device_blocks_unless_its_mapping_is_live_migration_capable(capsys, cluster):
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(hostpci0="mapping=nic"))
    assert guests(capsys, cluster)["refused"] == ["VM 100 (web) cannot be migrated: it uses local device hostpci0"]
    # live-migration-capable, but only pve2 has an entry of `vf`: Proxmox allows pve2 only
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(hostpci0="mapping=vf"))
    decided = guests(capsys, cluster)
    assert decided["refused"] == [] and decided["migrate"][0]["target"] == "pve2"


def test_a_local_disk_or_cd_rom_refuses_the_migration(capsys, cluster):
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(scsi1="local-lvm:vm-100-disk-1",
                                                             ide2="local:iso/debian.iso,media=cdrom"))
    assert guests(capsys, cluster)["refused"] == [
        "VM 100 (web) cannot be migrated: it uses local CD-ROM local:iso/debian.iso, "
        "local disk local-lvm:vm-100-disk-1"]


def test_a_container_with_a_local_bind_mount_cannot_move(capsys, cluster):
    edit(cluster, lambda s: s["vms"]["102"]["config"].update(mp0="/srv/data,mp=/data"))
    assert guests(capsys, cluster)["refused"] == [
        "CT 102 (proxy) cannot be migrated: it uses local mount point mp0 (/srv/data)"]
    edit(cluster, lambda s: s["vms"]["102"]["config"].update(mp0="/srv/data,mp=/data,shared=1"))
    assert guests(capsys, cluster)["refused"] == []


def test_no_online_node_to_go_to_refuses(capsys, cluster):
    edit(cluster, lambda s: s.update(offline=["pve2", "pve3"], quorate=True))
    decided = guests(capsys, cluster)
    assert "VM 100 (web) cannot be migrated: Proxmox allows no online node for it (online: none)" in decided["refused"]


def test_migrate_to_must_be_allowed_and_online(capsys, cluster):
    edit(cluster, lambda s: s.update(offline=["pve3"]))
    decided = guests(capsys, cluster, migrate_to="pve3")
    assert decided["refused"][0] == ("VM 100 (web) cannot be migrated: passthrough_reboot_migrate_to: pve3 is not an "
                                     "online node Proxmox allows for it (allowed: pve2)")
    decided = guests(capsys, cluster, migrate_to="pve2")
    assert {m["target"] for m in decided["migrate"]} == {"pve2"}


def test_check_mode_says_what_it_would_do_and_moves_nothing(capsys, cluster):
    decided = guests(capsys, cluster)
    failed, result = evacuate(capsys, cluster, "evacuated", decided, _ansible_check_mode=True)
    assert not failed and result["changed"]
    assert result["done"] == ["would enter HA maintenance of pve1", "would be migrating VM 100 from pve1 to pve3",
                              "would be migrating CT 102 from pve1 to pve3"]
    assert where(cluster)["100"] == "pve1" and "ha_nodes" not in json.loads(cluster["state"].read_text())


def test_a_failed_migration_task_fails_the_evacuation_naming_it(capsys, cluster):
    decided = guests(capsys, cluster)
    # between the decision and the move someone adds a raw device: the worker fails, the task says why
    edit(cluster, lambda s: s["vms"]["100"]["config"].update(hostpci0="0000:02:00.0"))
    failed, result = evacuate(capsys, cluster, "evacuated", decided)
    assert failed
    assert "migrating VM 100 from pve1 to pve3 failed: migration aborted: can't migrate VM which uses local " \
           "devices: hostpci0" in result["msg"]


def test_a_guest_still_running_after_the_evacuation_refuses_the_reboot(capsys, cluster):
    decided = guests(capsys, cluster)
    edit(cluster, lambda s: s["vms"]["103"].update(status="running"))  # started meanwhile
    failed, result = evacuate(capsys, cluster, "evacuated", decided)
    assert failed and "still running on pve1 after the evacuation: VM 103 - the reboot is refused" in result["msg"]


def test_ha_that_cannot_move_its_service_times_out_naming_what_it_waited_for(capsys, cluster):
    edit(cluster, lambda s: s.update(ha_nodes={"pve2": "maintenance", "pve3": "maintenance"}))
    decided = guests(capsys, cluster)
    # pve_guests refuses this up front: HA has no other online node for VM 101
    assert "VM 101 (db) cannot be moved by HA: no other online node for HA to move it to" in decided["refused"]
    # were maintenance entered anyway, the wait would end, say what it saw, and undo the maintenance
    failed, result = evacuate(capsys, cluster, "evacuated", decided, migrate=[], ha_maintenance=True, timeout=0)
    assert failed
    assert "timed out after 0s waiting until HA has moved every service away from pve1 (node state maintenance) " \
           "(last seen: node maintenance, services here: ['vm:101'])" in result["msg"]
    assert "undone: HA maintenance left" in result["msg"]
    assert json.loads(cluster["state"].read_text())["ha_nodes"]["pve1"] == "online"


def test_a_guest_moved_elsewhere_meanwhile_is_left_there(capsys, cluster):
    decided = guests(capsys, cluster)
    failed, result = evacuate(capsys, cluster, "evacuated", decided)
    assert not failed, result
    edit(cluster, lambda s: s["vms"]["100"].update(node="pve2"))
    failed, result = evacuate(capsys, cluster, "returned", decided)
    assert not failed and "VM 100 is on pve2 now, not on pve3: left there" in result["done"]
    assert where(cluster)["100"] == "pve2" and where(cluster)["102"] == "pve1"


def test_returned_without_back_leaves_the_guests_where_they_went(capsys, cluster):
    decided = guests(capsys, cluster, migrate_back=False)
    assert "VM 100 (web) is running: migrated to pve3 (online) before the reboot, and stays there" \
        in decided["report"]
    evacuate(capsys, cluster, "evacuated", decided)
    failed, result = evacuate(capsys, cluster, "returned", decided, back=False)
    assert not failed and where(cluster)["100"] == "pve3" and where(cluster)["101"] == "pve1"


def test_a_bad_move_is_refused_naming_it(capsys, cluster):
    failed, result = call(pve_evacuate, capsys, {"state": "evacuated", "node": "pve1", "pvesh": cluster["pvesh"],
                                                 "migrate": [{"vmid": "100", "type": "qemu"}]})
    assert failed and result["msg"].startswith("migrate[0]: ")


def test_an_ha_guest_a_restricted_group_keeps_here_refuses_the_reboot(capsys, cluster):
    """Proxmox VE 8: HA group `here` (restricted, pve1 only) - HA maintenance could never move VM 101."""
    edit(cluster, lambda s: (s["vms"]["101"].update(ha_group="here"),
                             s.update(ha_groups=[{"group": "here", "nodes": "pve1:2", "restricted": 1}])))
    decided = guests(capsys, cluster)
    assert decided["refused"] == ["VM 101 (db) cannot be moved by HA: a strict HA node-affinity rule or a restricted "
                                  "HA group keeps it on pve1, and none of them is another online node"]
    edit(cluster, lambda s: s.update(ha_groups=[{"group": "here", "nodes": "pve1:2,pve2", "restricted": 1}]))
    assert guests(capsys, cluster)["refused"] == []
