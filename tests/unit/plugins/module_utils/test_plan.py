"""The passthrough role's decisions and refusals, on the hardware profiles."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._host import corosync_addresses, kernel_version
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan


def facts(node, **kwargs):
    return gather(run=node.run, which=node.which, **node.roots, **kwargs)["ansible_facts"]


def recorded(selectors):
    """What file_state sees on a node where an earlier run recorded these selectors."""
    text = json.dumps({"selectors": selectors, "targets": []})
    return {"/etc/vfio-proxmox/state.json": {"exists": True, "type": "file", "content": text}}


def plan_for(fake_node, profile, devices, corosync=None, **inputs):
    node = fake_node(profile)
    return make_plan(facts(node), dict(inputs, devices=devices), corosync_conf=corosync)


def test_guide_host_by_interface_gets_ids_binding_and_grub(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}])
    assert plan["errors"] == []
    assert [d["address"] for d in plan["devices"]] == ["0000:02:00.0"]
    assert plan["ids"] == ["8086:15f3"] and plan["address_binds"] == []
    assert plan["softdeps"] == ["igc"]
    assert plan["boot_loader"] == "grub"
    # Kernel 6.8: the Intel IOMMU is on by default, vfio_virqfd is built into vfio.
    assert plan["cmdline_tokens"] == ["iommu=pt"]
    assert plan["modules"] == ["vfio", "vfio_iommu_type1", "vfio_pci"]
    assert plan["reboot_for_cmdline"] is True
    assert "8086:15f3 bound by ID: every device with this ID is selected" in plan["reasons"]


def test_old_intel_kernel_gets_intel_iommu_and_virqfd(fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p.update(kernel="6.1.0-27-amd64"))
    plan = make_plan(facts(node), {"devices": [{"address": "02:00.0"}], "extra_cmdline": ["pcie_aspm=off"]})
    assert plan["errors"] == []
    assert plan["cmdline_tokens"] == ["intel_iommu=on", "iommu=pt", "pcie_aspm=off"]
    assert plan["modules"][-1] == "vfio_virqfd"


def test_amd_never_gets_amd_iommu_on_and_systemd_boot_is_chosen(fake_node):
    plan = plan_for(fake_node, "amd-zfs-uefi", [{"id": "8086:125c", "class": "0200"}], iommu_pt=False)
    assert plan["errors"] == []
    assert plan["cmdline_tokens"] == []
    assert plan["boot_loader"] == "systemd-boot"
    assert plan["reboot_for_cmdline"] is False


def test_identical_dual_port_uses_address_binding_for_one_port(fake_node):
    plan = plan_for(fake_node, "dual-port-igb", [{"mac": "A0:36:9F:00:01:01"}])
    assert plan["errors"] == []
    assert plan["ids"] == []
    assert plan["address_binds"] == [{"address": "0000:01:00.1", "id": "8086:1521"}]
    assert "8086:1521 bound by address: 0000:01:00.0 has the same ID and is not selected" in plan["reasons"]


def test_ids_method_refuses_to_take_the_identical_sibling(fake_node):
    plan = plan_for(fake_node, "dual-port-igb", [{"interface": "enp1s0f1"}], bind_method="ids")
    assert plan["errors"] == ["passthrough_bind_method: 'ids' would also bind 0000:01:00.0 (8086:1521, not "
                              "selected); use 'address' or 'auto'"]


def test_management_nic_is_refused_directly_and_through_the_bridge(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"address": "0000:00:1f.6"}])
    assert plan["errors"] == [
        "passthrough_devices[0] (0000:00:1f.6): refusing - it carries a management path: "
        "eno1: vmbr0 holds 192.0.2.10/24; eno1: vmbr0: default route (ipv4) - set force: true on this entry "
        "to override"]


def test_force_turns_the_lockout_into_a_loud_warning(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "eno1", "force": True}])
    assert plan["errors"] == []
    assert plan["warnings"][0].startswith("passthrough_devices[0] (0000:00:1f.6): FORCED although - it carries")


def test_corosync_link_is_a_management_path(fake_node):
    conf = "nodelist {\n  node {\n    ring0_addr: 192.0.2.70\n  }\n}\n"
    plan = plan_for(fake_node, "bridge-trap", [{"interface": "enp2s0"}], corosync=conf)
    assert "enp2s0: vmbr0 carries corosync link 192.0.2.70" in plan["errors"][0]


def test_corosync_links_come_from_the_facts_when_no_text_is_given(fake_node):
    node = fake_node("bridge-trap")  # its /etc/pve/corosync.conf names 192.0.2.70
    found = facts(node)
    assert found["vfio_host"]["corosync_addresses"] == ["192.0.2.70"]
    plan = make_plan(found, {"devices": [{"interface": "enp2s0"}]})
    assert "enp2s0: vmbr0 carries corosync link 192.0.2.70" in plan["errors"][0]
    assert facts(fake_node("guide-intel"))["vfio_host"]["corosync_addresses"] == []


def test_bond_vlan_stack_member_is_refused(fake_node):
    plan = plan_for(fake_node, "bond-vlan", [{"interface": "enp2s0"}])
    assert len(plan["errors"]) == 1
    assert "enp2s0: vmbr0.10 holds 192.0.2.80/24" in plan["errors"][0]
    assert "enp2s0: vmbr0.10: default route (ipv6)" in plan["errors"][0]
    assert plan_for(fake_node, "bond-vlan", [{"interface": "enp3s0"}])["errors"] == []


def test_group_sibling_of_the_management_nic_is_refused(fake_node):
    plan = plan_for(fake_node, "chipset-group", [{"address": "0000:03:00.0", "allow_group": True}])
    assert len(plan["errors"]) == 2  # the SATA sibling holds root: test_plan_guards.py
    assert plan["errors"][1].startswith("passthrough_devices[0] (0000:03:00.0): refusing - it carries a management "
                                        "path: IOMMU group sibling 0000:02:00.0 enp2s0: vmbr0 holds 192.0.2.50/24")


def test_shared_group_is_refused_unless_allowed(fake_node):
    plan = plan_for(fake_node, "chipset-group", [{"address": "0000:03:00.0"}])
    assert plan["errors"][0].startswith("passthrough_devices[0] (0000:03:00.0): IOMMU group 5 is not isolated - it "
                                        "also holds 0000:00:14.0 (USB controller), 0000:00:17.0 (SATA controller")
    # Without the storage sibling, the group could go whole: the message says how.
    node = fake_node("chipset-group", mutate=lambda p: p.update(storage={"mounts": []}))
    plan = make_plan(facts(node), {"devices": [{"address": "0000:03:00.0"}]})
    assert ("passthrough_devices[0] (0000:03:00.0): IOMMU group 5 is not isolated - it also holds 0000:00:14.0 (USB "
            "controller), 0000:00:17.0 (SATA controller), 0000:02:00.0 (Ethernet controller); select them too or set "
            "allow_group: true on this entry") in plan["errors"]


def test_iommu_off_is_refused_with_the_reason(fake_node):
    plan = plan_for(fake_node, "iommu-off", [{"interface": "enp3s0"}])
    assert plan["errors"] == [
        "IOMMU unavailable: /sys/kernel/iommu_groups is empty on a intel CPU with kernel 6.8.12-4-pve and command "
        "line 'BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet' - enable VT-d/AMD-Vi "
        "(IOMMU) in the firmware setup"]


def test_iommu_off_on_an_old_intel_kernel_is_what_the_role_fixes(fake_node):
    node = fake_node("iommu-off", mutate=lambda p: p.update(kernel="6.5.13-6-pve"))
    plan = make_plan(facts(node), {"devices": [{"interface": "enp3s0"}]})
    assert plan["errors"] == []
    assert plan["warnings"] == ["IOMMU not active yet: the role adds intel_iommu=on; verify checks the IOMMU groups "
                                "after the reboot"]


def test_iommu_off_under_a_68_kernel_is_refused_even_with_an_older_kernel_installed(fake_node):
    # 6.8 enables the Intel IOMMU by default: no groups means VT-d is off in the firmware.
    node = fake_node("iommu-off", mutate=lambda p: p["files"].update({"/boot/vmlinuz-6.1.0-27-amd64": ""}))
    plan = make_plan(facts(node), {"devices": [{"interface": "enp3s0"}]})
    assert plan["cmdline_tokens"][0] == "intel_iommu=on"
    assert plan["errors"][0].startswith("IOMMU unavailable: /sys/kernel/iommu_groups is empty")


def test_unsafe_blacklist_is_refused(fake_node):
    plan = plan_for(fake_node, "dual-port-igb", [{"interface": "enp1s0f1"}], blacklist_drivers=["igb"])
    assert "passthrough_blacklist_drivers: 'igb' would also take 0000:01:00.0, which is not selected" in plan["errors"]
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], blacklist_drivers=["igc"])
    assert (plan["errors"], plan["blacklist"]) == ([], ["igc"])


@pytest.mark.parametrize(("entry", "message"), [
    ({"address": "02:00"}, "passthrough_devices[0].address: '02:00' is not a PCI address (expected 0000:02:00.0)"),
    ({"address": "0000:09:00.0"}, "passthrough_devices[0].address: '0000:09:00.0' - no such PCI device on this node"),
    ({"mac": "a8:a1:59:00:00"}, "passthrough_devices[0].mac: 'a8:a1:59:00:00' is not a MAC address"),
    ({"mac": "02:00:00:00:00:99"}, "passthrough_devices[0].mac: '02:00:00:00:00:99' - no PCI network function has"),
    ({"interface": "enp9s0"}, "passthrough_devices[0].interface: 'enp9s0' - no PCI network function has this "
                              "interface (known: eno1, enp2s0)"),
    ({"id": "8086-15f3"}, "passthrough_devices[0].id: '8086-15f3' is not a vendor:device ID (expected 8086:15f3)"),
    ({"id": "8086:dead"}, "passthrough_devices[0].id: '8086:dead' - no PCI device with this ID on this node"),
    ({"id": "8086:15f3", "class": "03"}, "passthrough_devices[0].id: '8086:15f3' and class 03 - no PCI device"),
    ({"id": "8086:15f3", "class": "zz"}, "passthrough_devices[0].class: 'zz' is not a hex class prefix"),
    ({"interface": "enp2s0", "class": "02"}, "passthrough_devices[0].class: only allowed with id, not with interface"),
    ({"interface": "enp2s0", "address": "0000:02:00.0"}, "passthrough_devices[0]: needs exactly one of address, "
                                                         "interface, mac, id, got address, interface"),
    ({}, "passthrough_devices[0]: needs exactly one of address, interface, mac, id, got none"),
    ({"name": "x"}, "passthrough_devices[0]: unknown key(s) name"),
    ("enp2s0", "passthrough_devices[0]: 'enp2s0' is not a mapping"),
    ({"address": "0000:00:1c.0"}, "passthrough_devices[0] selects 0000:00:1c.0, a PCI bridge (class 060400)"),
])
def test_every_malformed_selector_names_variable_and_value(fake_node, entry, message):
    plan = plan_for(fake_node, "guide-intel", [entry])
    assert len(plan["errors"]) == 1, plan["errors"]
    assert plan["errors"][0].startswith(message)


def test_the_same_device_twice_is_refused(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}, {"id": "8086:15f3"}])
    assert plan["errors"] == ["passthrough_devices[1] selects 0000:02:00.0, already selected by passthrough_devices[0]"]


def test_sriov_pf_with_vfs_is_refused_but_a_vf_is_fine(fake_node):
    plan = plan_for(fake_node, "sriov-x710", [{"address": "0000:04:00.0"}])
    assert plan["errors"][0].startswith("passthrough_devices[0] selects 0000:04:00.0, an SR-IOV physical function")
    plan = plan_for(fake_node, "sriov-x710", [{"interface": "enp4s0f0v1"}])
    assert plan["errors"] == []
    assert plan["address_binds"] == [{"address": "0000:04:02.1", "id": "8086:154c"}]


def test_unknown_boot_loader_needs_an_explicit_choice(fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p.update(boot_loader="none"))
    plan = make_plan(facts(node), {"devices": [{"interface": "enp2s0"}]})
    assert plan["errors"] == ["passthrough_boot_loader: 'auto' could not tell the boot loader (nothing recognised); "
                              "set grub or systemd-boot"]
    plan = make_plan(facts(node), {"devices": [{"interface": "enp2s0"}], "boot_loader": "grub"})
    assert (plan["errors"], plan["boot_loader"]) == ([], "grub")


def test_no_devices_plans_nothing(fake_node):
    plan = plan_for(fake_node, "iommu-off", [])
    assert (plan["errors"], plan["devices"], plan["ids"]) == ([], [], [])


def test_helpers():
    assert kernel_version("6.8.12-4-pve") == (6, 8)
    assert kernel_version("garbage") == (0, 0)
    assert corosync_addresses("ring0_addr: 10.0.0.1\n  link1_addr : fd00::1\nname: ring0_addr\n") == [
        "10.0.0.1", "fd00::1"]


def test_absent_skips_the_safety_checks_but_still_resolves(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "eno1"}], state="absent")
    assert plan["errors"] == []
    assert plan["targets"] == [{"address": "0000:00:1f.6", "id": "8086:1a1c"}]
    # Removal decides no boot loader and no reboot from the selection: see test_desired.py.
    assert (plan["boot_loader"], plan["ids"], plan["reboot_for_cmdline"]) == (None, [], False)
    assert plan_for(fake_node, "guide-intel", [{"interface": "nope"}], state="absent")["errors"]


def test_softdeps_only_for_drivers_of_id_bound_devices(fake_node):
    plan = plan_for(fake_node, "dual-port-igb", [{"interface": "enp1s0f1"}])
    assert plan["softdeps"] == []


def test_interface_and_mac_of_a_device_on_vfio_pci_resolve_through_the_record(fake_node):
    first = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}, {"mac": "3C:EC:EF:00:00:01", "force": True}])
    assert first["record"] == {"interface:enp2s0": {"address": "0000:02:00.0", "id": "8086:15f3"},
                               "mac:3c:ec:ef:00:00:01": {"address": "0000:00:1f.6", "id": "8086:1a1c"}}

    def bound(profile):  # after the reboot: on vfio-pci, no netdev any more
        for index in (3, 4):
            profile["devices"][index].update(driver="vfio-pci", netdevs=[])
        profile["interfaces"] = []
    node = fake_node("guide-intel", mutate=bound)
    again = make_plan(facts(node), {"devices": [{"interface": "enp2s0"}, {"mac": "3c:ec:ef:00:00:01"}]},
                      recorded(first["record"]))
    assert again["errors"] == []
    assert [d["address"] for d in again["devices"]] == ["0000:00:1f.6", "0000:02:00.0"]
    reason = "interface:enp2s0: 0000:02:00.0 is on vfio-pci, found through the record of an earlier run"
    assert reason in again["reasons"]
    assert again["record"] == first["record"]


def test_the_record_is_not_trusted_for_a_changed_or_unbound_device(fake_node):
    record = {"interface:enp2s0": {"address": "0000:02:00.0", "id": "8086:1521"}}
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver="vfio-pci", netdevs=[]))
    plan = make_plan(facts(node), {"devices": [{"interface": "enp2s0"}]}, recorded(record))
    assert plan["errors"][0].startswith("passthrough_devices[0].interface: 'enp2s0' - no PCI network function")
    record = {"interface:enp2s0": {"address": "0000:02:00.0", "id": "8086:15f3"}}
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver=None, netdevs=[]))
    plan = make_plan(facts(node), {"devices": [{"interface": "enp2s0"}]}, recorded(record))
    assert len(plan["errors"]) == 1
