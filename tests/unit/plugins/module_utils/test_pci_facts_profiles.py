"""pci_facts logic against every hardware profile's fake tree."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from tests.sim import fakeroot


def gathered(node, **kwargs):
    return gather(run=node.run, which=node.which, **node.roots, **kwargs)


def facts_of(node, **kwargs):
    return gathered(node, **kwargs)["ansible_facts"]


def by_address(facts):
    return {d["address"]: d for d in facts["vfio_pci_devices"]}


def netdev(facts, name):
    for dev in facts["vfio_pci_devices"]:
        for net in dev["netdevs"]:
            if net["name"] == name:
                return net
    raise KeyError(name)


@pytest.mark.parametrize("name", fakeroot.profile_names())
def test_every_profile_device_is_reported_as_declared(fake_node, name):
    node = fake_node(name)
    result = gathered(node)
    facts = result["ansible_facts"]
    assert result["warnings"] == []
    devices = by_address(facts)
    assert sorted(devices) == sorted(d["address"] for d in node.profile["devices"])
    assert [d["address"] for d in facts["vfio_pci_devices"]] == sorted(devices)
    for declared in node.profile["devices"]:
        got = devices[declared["address"]]
        assert "%s:%s" % (got["vendor"], got["device"]) == declared["id"]
        assert "%s:%s" % (got["subsystem_vendor"], got["subsystem_device"]) == declared["subsystem"]
        assert got["class"] == declared["class"]
        assert got["revision"] == declared["revision"]
        assert got["driver"] == declared["driver"]
        assert got["device_name"] == declared.get("name")
        assert got["vendor_name"] == node.profile["vendors"][declared["id"][:4]]
        want_group = str(declared["group"]) if node.profile["iommu"] and "group" in declared else None
        assert got["iommu_group"] == want_group
        assert got["reset_methods"] == declared.get("reset", [])
        assert [n["name"] for n in got["netdevs"]] == sorted(n["name"] for n in declared["netdevs"])
        want_modules = [declared["driver"]] if declared["driver"] not in (None, "pcieport") else []
        assert got["modules"] == want_modules
    host = facts["vfio_host"]
    assert host["iommu_active"] is node.profile["iommu"]
    assert host["kernel_release"] == node.profile["kernel"]
    assert host["cpu_vendor"] == node.profile["cpu"]
    assert host["cmdline"] == node.profile["cmdline"].split()
    assert host["boot_loader"]["name"] == node.profile["boot_loader"]
    assert host["boot_loader"]["efi"] is node.profile["efi"]


def test_the_running_command_line_is_split_as_the_kernel_splits_it(fake_node):
    """A quoted value with blanks is one parameter (lib/cmdline.c next_arg), so `iommu=pt` inside it is not one."""
    node = fake_node("guide-intel", mutate=lambda p: p.update(
        cmdline='BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 dyndbg="file x.c iommu=pt +p"\tquiet'))
    assert facts_of(node)["vfio_host"]["cmdline"] == [
        "BOOT_IMAGE=/boot/vmlinuz", "root=/dev/sda1", 'dyndbg="file x.c iommu=pt +p"', "quiet"]


def test_guide_host_marks_the_bridged_onboard_nic_as_management(fake_node):
    facts = facts_of(fake_node("guide-intel"))
    eno1 = netdev(facts, "eno1")
    assert eno1["master"] == "vmbr0"
    assert eno1["uppers"] == ["vmbr0"]
    assert eno1["default_route"] is True
    assert eno1["management"] is True
    assert eno1["management_reasons"] == ["vmbr0: default route (ipv4)"]
    assert [a["address"] for a in eno1["addresses"]] == ["192.0.2.10"]
    enp2s0 = netdev(facts, "enp2s0")
    assert (enp2s0["management"], enp2s0["default_route"], enp2s0["addresses"]) == (False, False, [])
    assert enp2s0["speed"] == 2500
    assert facts["vfio_host"]["management_interfaces"] == [
        {"interface": "vmbr0", "reasons": ["default route (ipv4)"]}]
    assert facts["vfio_host"]["interrupt_remapping"] is True
    assert facts["vfio_host"]["boot_loader"]["source"] == "/boot/grub/grub.cfg present"
    devices = by_address(facts)
    assert devices["0000:02:00.0"]["class_name"] == "Ethernet controller"
    assert devices["0000:00:1c.0"]["is_bridge"] and not devices["0000:02:00.0"]["is_bridge"]
    assert devices["0000:02:00.0"]["is_network"]
    assert devices["0000:02:00.0"]["modalias"] == "pci:v00008086d000015F3sv00008086sd00000000bc02sc00i00"


def test_connection_address_marks_its_interface(fake_node):
    result = gathered(fake_node("bridge-trap"), connection_address="192.0.2.70")
    facts = result["ansible_facts"]
    assert result["warnings"] == []
    enp2s0 = netdev(facts, "enp2s0")
    assert enp2s0["management_reasons"] == [
        "vmbr0: default route (ipv4)", "vmbr0: holds connection address 192.0.2.70"]
    assert facts["vfio_host"]["connection_address"] == "192.0.2.70"


def test_unknown_connection_address_is_a_warning(fake_node):
    warnings = gathered(fake_node("bridge-trap"), connection_address="198.51.100.9")["warnings"]
    assert warnings == ["connection address 198.51.100.9 is not held by any interface"]


def test_systemd_boot_is_read_from_proxmox_boot_tool(fake_node):
    node = fake_node("amd-zfs-uefi")
    facts = facts_of(node)
    boot = facts["vfio_host"]["boot_loader"]
    assert boot == {"name": "systemd-boot", "source": "proxmox-boot-tool status: ESP in uefi mode",
                    "efi": True, "esps": [{"uuid": "9C3D-1A2B", "mode": "uefi"}]}
    assert ["/usr/sbin/proxmox-boot-tool", "status"] in node.calls
    assert by_address(facts)["0000:00:00.0"]["iommu_group"] is None
    assert netdev(facts, "enp5s0")["management"] is True
    families = sorted(a["family"] for a in netdev(facts, "enp5s0")["addresses"])
    assert families == ["ipv4", "ipv6"]


def test_systemd_boot_without_the_tool_falls_back_to_files(fake_node):
    node = fake_node("amd-zfs-uefi", mutate=lambda p: p.pop("proxmox_boot_tool_status"))
    facts = facts_of(node)
    boot = facts["vfio_host"]["boot_loader"]
    assert boot["name"] == "systemd-boot"
    assert "proxmox-boot-uuids" in boot["source"]


def test_grub_mode_esps_under_proxmox_boot_tool_mean_grub(fake_node):
    status = "System currently booted with legacy bios\n1234-ABCD is configured with: grub (versions: 6.8.12-4-pve)\n"
    node = fake_node("guide-intel", mutate=lambda p: p.update(proxmox_boot_tool_status=status))
    facts = facts_of(node)
    assert facts["vfio_host"]["boot_loader"]["name"] == "grub"
    assert facts["vfio_host"]["boot_loader"]["source"] == "proxmox-boot-tool status: every ESP in grub mode"


def test_identical_dual_port_functions_and_sriov_capability(fake_node):
    facts = facts_of(fake_node("dual-port-igb"))
    devices = by_address(facts)
    port0, port1 = devices["0000:01:00.0"], devices["0000:01:00.1"]
    assert (port0["vendor"], port0["device"]) == (port1["vendor"], port1["device"]) == ("8086", "1521")
    assert port0["iommu_group"] != port1["iommu_group"]
    # No sriov_vf_device in this profile (a kernel before it was added): not known.
    assert port0["sriov"] == {"total_vfs": 7, "num_vfs": 0, "physfn": None, "vfs": [], "vf_settings": [],
                              "vf_settings_error": None, "vf_device": None}
    assert netdev(facts, "enp1s0f1")["operstate"] == "down"
    assert netdev(facts, "enp1s0f1")["speed"] is None
    assert netdev(facts, "enp1s0f0")["management"] is True


def test_iommu_off_has_no_groups(fake_node):
    facts = facts_of(fake_node("iommu-off"))
    assert facts["vfio_iommu_groups"] == {}
    assert facts["vfio_host"]["iommu_active"] is False
    assert all(d["iommu_group"] is None and d["iommu_group_peers"] == [] for d in facts["vfio_pci_devices"])
    assert facts["vfio_host"]["interrupt_remapping"] is None


def test_chipset_group_lists_every_peer(fake_node):
    facts = facts_of(fake_node("chipset-group"))
    members = ["0000:00:14.0", "0000:00:17.0", "0000:00:1c.0", "0000:02:00.0", "0000:03:00.0"]
    assert facts["vfio_iommu_groups"]["5"] == members
    igc = by_address(facts)["0000:03:00.0"]
    assert igc["iommu_group_peers"] == [m for m in members if m != "0000:03:00.0"]
    assert list(facts["vfio_iommu_groups"]) == ["0", "5"]


def test_sriov_physical_and_virtual_functions(fake_node):
    facts = facts_of(fake_node("sriov-x710"))
    devices = by_address(facts)
    vf = {"vlan": 0, "spoofchk": True, "trust": False, "state": "auto"}
    assert devices["0000:04:00.0"]["sriov"] == {
        "total_vfs": 32, "num_vfs": 2, "physfn": None, "vfs": ["0000:04:02.0", "0000:04:02.1"],
        "vf_settings": [dict(vf, index=0, mac="02:00:04:00:00:00"), dict(vf, index=1, mac="02:00:04:00:00:01")],
        "vf_settings_error": None, "vf_device": "154c"}
    assert devices["0000:04:02.1"]["sriov"] == {
        "total_vfs": None, "num_vfs": None, "physfn": "0000:04:00.0", "vfs": [], "vf_device": None}
    assert devices["0000:04:00.0"]["numa_node"] == 0
    assert devices["0000:00:1f.6"]["numa_node"] is None


def test_bond_bridge_vlan_stack_is_followed_to_the_address(fake_node):
    facts = facts_of(fake_node("bond-vlan"))
    enp1s0 = netdev(facts, "enp1s0")
    assert enp1s0["master"] == "bond0"
    assert enp1s0["uppers"] == ["bond0", "vmbr0", "vmbr0.10"]
    assert enp1s0["default_route"] is True
    assert enp1s0["management_reasons"] == ["vmbr0.10: default route (ipv4)", "vmbr0.10: default route (ipv6)"]
    assert [a["interface"] for a in enp1s0["addresses"]] == ["vmbr0.10", "vmbr0.10"]
    enp3s0 = netdev(facts, "enp3s0")
    assert (enp3s0["uppers"], enp3s0["management"]) == ([], False)


def test_class_filter_limits_devices_but_not_groups(fake_node):
    facts = facts_of(fake_node("chipset-group"), classes=["02"])
    assert [d["address"] for d in facts["vfio_pci_devices"]] == ["0000:02:00.0", "0000:03:00.0"]
    assert len(facts["vfio_iommu_groups"]["5"]) == 5
    facts = facts_of(fake_node("chipset-group"), classes=["0x0604"])
    assert [d["address"] for d in facts["vfio_pci_devices"]] == ["0000:00:1c.0"]


def test_virtio_net_interface_one_level_below_the_pci_function(fake_node):
    def virtio(profile):
        profile["devices"][3]["netdevs"][0]["subdir"] = "virtio1"
    facts = facts_of(fake_node("guide-intel", mutate=virtio))
    eno1 = by_address(facts)["0000:00:1f.6"]["netdevs"]
    assert [n["name"] for n in eno1] == ["eno1"]
    assert eno1[0]["management"] is True
    assert by_address(facts)["0000:00:1c.0"]["netdevs"] == []
