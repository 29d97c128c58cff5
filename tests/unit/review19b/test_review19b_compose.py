"""Review 19b (adversarial): the composer and the SR-IOV planner on hardware states the profiles did not
simulate. Each test failed on the code before its fix; its docstring names the production consequence."""

from __future__ import annotations

import copy

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from tests.unit.review19.review19_helpers import facts, inputs, state_json

PF = "0000:04:00.0"
VF0, VF1 = "0000:04:02.0", "0000:04:02.1"


def named(plan: dict, *words: str) -> list[str]:
    return [e for e in plan["errors"] if all(w in e for w in words)]


def _pf_without_driver(profile):
    pf = next(d for d in profile["devices"] if d["address"] == PF)
    pf.update(driver=None, netdevs=[])
    pf["sriov"] = {"total": 32, "num": 0}
    profile["devices"] = [d for d in profile["devices"] if d.get("physfn") != PF]


def test_sriov_on_a_pf_whose_driver_is_not_loaded_is_refused_before_any_write(fake_node):
    """i40e not loaded (blacklisted, or the firmware refused it): sriov_totalvfs is still there, so the plan
    accepts 'vfs: 4'. The kernel refuses sriov_numvfs on a device without a driver (ENOENT, 'no driver bound
    to device'), so the run fails after the owned files were written and the unit enabled, and the unit then
    fails at every boot. The refusal belongs in the plan, naming the PF and its missing driver."""
    found = facts(fake_node, mutate=_pf_without_driver)
    device = next(d for d in found["vfio_pci_devices"] if d["address"] == PF)
    assert device["driver"] is None and (device.get("sriov") or {}).get("total_vfs") == 32
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 4, "vf_macs": "keep"}]))
    assert named(plan, PF, "driver"), plan["errors"]


def device_of(found: dict, address: str) -> dict:
    return next(d for d in found["vfio_pci_devices"] if d["address"] == address)


def _vfs_on_vfio(profile):
    for device in profile["devices"]:
        if device.get("physfn") == PF:
            device.update(driver="vfio-pci", netdevs=[])


def test_a_vf_released_by_passthrough_while_sriov_keeps_it_on_vfio_pci_is_refused(fake_node):
    """An earlier run passed both VFs through and gave the PF vf_driver: vfio-pci; now VF 1 is dropped from
    passthrough_devices (VF 0 stays), passthrough_sriov unchanged. The composed plan releases VF 1 live to iavf
    (bind_targets state absent) while the SR-IOV part of the same plan says every VF of that PF belongs on
    vfio-pci: after this run VF 1 is on iavf, the next run's sriov_vfs moves it back to vfio-pci, and every reboot
    does too - the two features fight over one device and the node never converges. The composer should refuse
    (or drop the release, since SR-IOV keeps the VF on vfio-pci)."""
    seen = {"/etc/vfio-proxmox/state.json": state_json(
        selectors={}, created_dirs=[],
        targets=[{"address": VF0, "id": "8086:154c"}, {"address": VF1, "id": "8086:154c"}],
        sriov=[{"address": PF, "id": "8086:1572", "vfs": 2, "vf_driver": "vfio-pci"}])}
    plan = plan_node(facts(fake_node, mutate=_vfs_on_vfio),
                     inputs(devices=[{"address": VF0}], sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]),
                     seen)
    releases = [t for t in plan["bind_targets"] if t["address"] == VF1 and t["state"] == "absent"]
    assert not releases or named(plan, VF1), (plan["errors"], plan["bind_targets"])


def _vf0_in_a_container(profile):
    next(d for d in profile["devices"] if d["address"] == VF0)["netdevs"] = []  # lxc.net.0.type: phys


def test_a_count_change_that_destroys_a_vf_a_running_container_holds_is_refused(fake_node):
    """Giving VFs to LXC containers (lxc.net.0.type: phys, link enp4s0f0v0) is the common way to use SR-IOV with
    containers: the VF's interface moves into the container's namespace, so the host sees iavf bound and no
    interface. busy_vfs() only looks at host interfaces, so a count change from 2 to 4 destroys VF 0 under the
    running container (its network is gone until the container is restarted by hand with a VF that has the
    name it expects). A VF on a host network driver with no visible interface should count as in use."""
    found = facts(fake_node, mutate=_vf0_in_a_container)
    assert device_of(found, VF0)["driver"] == "iavf" and device_of(found, VF0)["netdevs"] == []
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 4, "vf_macs": "keep"}]))
    assert named(plan, VF0), plan["errors"]


def _an_xxv710_next_to_it(profile):
    pf = copy.deepcopy(next(d for d in profile["devices"] if d["address"] == PF))
    pf.update(address="0000:05:00.0", id="8086:158b", name="Ethernet Controller XXV710 for 25GbE SFP28", group=23)
    # The kernel shows the VF device ID before any VF exists (sriov_vf_device).
    pf["sriov"] = {"total": 64, "num": 0, "vf_device": "154c"}
    pf["netdevs"][0].update(name="enp5s0f0np0", mac="3c:fd:fe:00:05:00")
    profile["devices"].append(pf)


def test_ids_binding_a_vf_id_that_another_pf_model_makes_for_the_host_is_refused(fake_node):
    """X710 (8086:1572) and XXV710 (8086:158b) PFs both make VFs 8086:154c (i40e's VF ID). Both X710 VFs are
    passed through, so 'auto' binds them by ID (options vfio-pci ids=8086:154c); the XXV710 gets 4 VFs for the
    host (vf_driver: host) in the same run. The composer's guard looks up VF IDs by the PF's own vendor:device,
    so the XXV710 (no VFs yet, another PF ID) passes - and from the next boot vfio-pci holds the ID 154c and
    takes the host's XXV710 VFs too: the host networks on those VFs (VLANs, bridges) are gone after a reboot."""
    found = facts(fake_node, mutate=_an_xxv710_next_to_it)
    plan = plan_node(found, inputs(devices=[{"address": VF0}, {"address": VF1}],
                                   sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"},
                                          {"address": "0000:05:00.0", "vfs": 4, "vf_driver": "host"}]))
    assert "8086:154c" in plan["ids"]
    assert named(plan, "0000:05:00.0", "ids"), plan["errors"]


def _vfs_share_the_pf_group(profile):
    for device in profile["devices"]:
        if device.get("physfn") == PF:
            device["group"] = 20  # the PF's: a root port without ACS puts the PF and its VFs in one group


def test_vfs_for_vms_that_share_their_pfs_iommu_group_are_not_planned_silently(fake_node):
    """Without ACS above the X710, its VFs land in the PF's IOMMU group 20. vf_driver: vfio-pci puts them on
    vfio-pci 'for VMs', but the PF must stay on i40e to carry them, so group 20 is never viable: every VM given
    one of these VFs fails to start. The facts show the shared group before any write; the plan says nothing
    (sriov_vfs only lists it among 'problems' after the VFs were moved)."""
    found = facts(fake_node, mutate=_vfs_share_the_pf_group)
    plan = plan_node(found, inputs(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]))
    assert [m for m in plan["errors"] + plan["warnings"] if "group" in m.lower() and "20" in m], (
        plan["errors"], plan["warnings"])


def test_a_vf_that_nothing_recreates_at_boot_is_not_passed_through_silently(fake_node):
    """VF 1 of the X710 exists now because someone wrote sriov_numvfs by hand (no passthrough_sriov entry, no
    sriov.conf, no sysfsutils line). passthrough_devices selects it; the plan writes an init-top address bind
    for it (VFs never exist in the initramfs) and asks for a reboot (iommu=pt). After that reboot the PF has 0
    VFs: 0000:04:02.1 is gone, the VM whose hostpci names it does not start, and verify fails the host. The plan
    says nothing - it should refuse, or at least warn, naming the VF and that nothing recreates it at boot."""
    plan = plan_node(facts(fake_node), inputs(devices=[{"address": VF1}]))
    assert plan["reboot_for_cmdline"] and plan["address_binds"] == [{"address": VF1, "id": "8086:154c"}]
    assert [m for m in plan["errors"] + plan["warnings"] if VF1 in m], (plan["errors"], plan["warnings"])


def _ports_share_a_group(profile):
    for device in profile["devices"]:
        if device["address"] in ("0000:01:00.0", "0000:01:00.1"):
            device["group"] = 2
    profile["interfaces"][0]["lowers"] = []  # management elsewhere: only the group question is left


def test_allow_group_whose_sibling_is_split_into_vfs_in_the_same_run_is_refused(fake_node):
    """A dual-port card without ACS: both ports in IOMMU group 2. passthrough_devices takes port 1 with
    allow_group ('port 0 goes with it'), and passthrough_sriov splits port 0 into VFs for the host - port 0
    must stay on igb to carry VFs. vfio then finds group 2 not viable (igb holds a member) and the VM never
    starts; the composer should refuse one device both given away with its group and kept as an SR-IOV PF."""
    found = facts(fake_node, "dual-port-igb", mutate=_ports_share_a_group)
    plan = plan_node(found, inputs(devices=[{"address": "0000:01:00.1", "allow_group": True}],
                                   sriov=[{"address": "0000:01:00.0", "vfs": 2, "vf_driver": "host"}]))
    assert named(plan, "0000:01:00.0", "group"), (plan["errors"], plan["warnings"])
