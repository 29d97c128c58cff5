"""Review 19b (adversarial): the SR-IOV boot script (vfio-proxmox-sriov.sh.j2) run by a real sh on a fake tree."""

from __future__ import annotations

from tests.unit.playbooks.test_sriov_boot import run_script

PF = "0000:04:00.0"


def vfs_without_interfaces_yet(profile):
    """iavf is bound to both VFs, but has not registered their netdevs yet (it does that from a work queue after
    the PF answers on the admin queue - hundreds of milliseconds to seconds after sriov_numvfs is written)."""
    for device in profile["devices"]:
        if device.get("physfn") == PF:
            device["netdevs"] = []


def test_the_boot_script_does_not_return_before_the_host_vfs_have_their_interfaces(tmp_path, fake_node):
    """vf_driver: host is how a VF carries host networking - e.g. vmbr0's port is enp4s0f0v0. The unit is ordered
    Before=networking.service precisely so the VFs exist when ifupdown2 builds the bridges, but for 'host' the
    script only writes the count and returns: networking.service starts while iavf has not registered the VF
    interfaces yet, ifupdown2 brings vmbr0 up without its port, and the node is off the network after the reboot
    (a lockout on a node whose management bridge is on a VF). The script should wait (bounded) for the host
    VFs' interfaces, or fail the unit loudly - not log '2 VFs (host)' and succeed."""
    node = fake_node("sriov-x710", mutate=vfs_without_interfaces_yet)
    done, _calls = run_script(tmp_path, node, "pf 0000:04:00.0 8086:1572 2 host\n"
                                              "vf 0000:04:00.0 0 mac 02:00:04:00:00:00\n")
    assert done.returncode != 0 or "0000:04:02.0" in done.stdout, done.stdout
