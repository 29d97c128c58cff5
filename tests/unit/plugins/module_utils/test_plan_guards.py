"""Guards that must fail closed: inputs as inventories hand them over, what discovery cannot
see, storage, Open vSwitch, hand-made vfio configuration, several kernels (issue 9)."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan


def facts(node):
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def plan_for(fake_node, profile, devices, mutate=None, **inputs):
    return make_plan(facts(fake_node(profile, mutate=mutate)), dict(inputs, devices=devices))


# --- inputs as surveys, INI inventories and -e hand them over ----------------------------------

@pytest.mark.parametrize("false", [False, "false", "no", "False", "off", "0", 0])
def test_force_spelled_false_keeps_the_lockout_guard(fake_node, false):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "eno1", "force": false}])
    assert len(plan["errors"]) == 1
    assert "refusing - it carries a management path" in plan["errors"][0]


@pytest.mark.parametrize("true", [True, "true", "yes", "on", "1", 1])
def test_force_spelled_true_overrides(fake_node, true):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "eno1", "force": true}])
    assert plan["errors"] == []


def test_allow_group_spelled_no_keeps_the_group_check(fake_node):
    plan = plan_for(fake_node, "chipset-group", [{"interface": "enp3s0", "allow_group": "no"}])
    assert any("IOMMU group 5 is not isolated" in e for e in plan["errors"])


@pytest.mark.parametrize(("key", "value"), [("force", "maybe"), ("allow_group", "2"), ("force", ["yes"])])
def test_a_flag_that_is_no_boolean_is_refused_by_name(fake_node, key, value):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0", key: value}])
    assert "passthrough_devices[0].%s: %r is not a boolean (use true or false)" % (key, value) in plan["errors"]


def test_iommu_pt_spelled_false_is_false(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], iommu_pt="false")
    assert plan["errors"] == [] and plan["cmdline_tokens"] == []


@pytest.mark.parametrize("key, variable, value", [
    ("bind_method", "passthrough_bind_method", "id"), ("boot_loader", "passthrough_boot_loader", "systemd"),
    ("state", "passthrough_state", "absnet"), ("reboot", "passthrough_reboot", "always")])
def test_a_value_outside_the_choices_is_refused_not_read_as_the_default(fake_node, key, variable, value):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], **{key: value})
    assert "%s: %r is not one of" % (variable, value) in " ".join(plan["errors"])


def test_devices_given_as_a_key_value_string_is_one_clear_error(fake_node):
    plan = plan_for(fake_node, "guide-intel", "interface=enp2s0")
    assert len(plan["errors"]) == 1
    assert plan["errors"][0].startswith("passthrough_devices: 'interface=enp2s0' is a string, not a list of mappings")


@pytest.mark.parametrize("name", ["e1000e", " e1000e ", "e1000e\t"])
def test_blacklist_names_are_compared_after_trimming(fake_node, name):
    # guide-intel's management NIC uses e1000e.
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], blacklist_drivers=[name])
    assert plan["errors"] == ["passthrough_blacklist_drivers: 'e1000e' would also take 0000:00:1f.6, which is not "
                              "selected"]


def test_blacklist_with_dash_matches_an_underscore_driver(fake_node):
    def bnxt(profile):
        profile["devices"][3]["driver"] = "bnxt_en"  # the management NIC
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], mutate=bnxt,
                    blacklist_drivers=["bnxt-en", " bnxt_en "])
    assert len([e for e in plan["errors"] if "would also take 0000:00:1f.6" in e]) == 2


@pytest.mark.parametrize("name", ["igc\ninstall e1000e /bin/sh", "igc; rm", "", "ig c"])
def test_a_blacklist_entry_that_is_no_module_name_is_refused(fake_node, name):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], blacklist_drivers=[name])
    assert plan["errors"] == ["passthrough_blacklist_drivers[0]: %r is not a kernel module name (letters, digits, "
                              "_ and - only)" % name]
    assert plan["blacklist"] == []


@pytest.mark.parametrize("token", ["$(reboot)", "`id`", 'a"b', "a'b", "pcie_aspm=off\nGRUB_TIMEOUT=0", "a b",
                                   "x;y", "a|b", "a&b", "a>b", "\t", ""])
def test_unsafe_kernel_parameters_are_refused(fake_node, token):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], extra_cmdline=["pcie_aspm=off", token])
    assert len(plan["errors"]) == 1
    assert plan["errors"][0].startswith("passthrough_extra_cmdline[1]: %r is not one plain kernel parameter" % token)


@pytest.mark.parametrize("token", ["root=/dev/sda1", "init=/bin/sh", "ro", "boot=zfs", "rootflags=x"])
def test_boot_critical_parameters_are_refused(fake_node, token):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], extra_cmdline=[token])
    assert len(plan["errors"]) == 1 and "decides what boots; the role never writes it" in plan["errors"][0]


def test_parameters_the_role_decides_are_refused_in_extra(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], extra_cmdline=["iommu=on"])
    assert plan["errors"] == ["passthrough_extra_cmdline[0]: 'iommu=on' sets iommu, which the role decides (see "
                              "passthrough_iommu_pt)"]
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], extra_cmdline=["pcie_acs_override=downstream"])
    assert plan["errors"] == [] and plan["cmdline_tokens"] == ["iommu=pt", "pcie_acs_override=downstream"]


# --- the lockout guard when discovery cannot see the network -------------------------------------

def test_without_ip_every_network_function_is_refused(fake_node):
    node = fake_node("guide-intel")
    node.commands.pop("ip -j addr show")
    node.commands.pop("ip -j -4 route show default")
    node.commands.pop("ip -j -6 route show default")
    node.commands.pop("ip -j -d link show")
    found = facts(node)
    assert found["vfio_host"]["network_error"] == "ip (iproute2) not found"
    plan = make_plan(found, {"devices": [{"interface": "enp2s0"}]})
    assert plan["errors"] == [
        "passthrough_devices[0] (0000:02:00.0): refusing - it carries a management path: addresses and routes could "
        "not be read (ip (iproute2) not found), so its management paths are unknown - set force: true on this entry "
        "to override"]
    plan = make_plan(found, {"devices": [{"interface": "enp2s0", "force": True}]})
    assert plan["errors"] == [] and "FORCED although" in plan["warnings"][0]


@pytest.mark.parametrize(("command", "answer"), [("ip -j -6 route show default", None),
                                                 ("ip -j addr show", "not json")])
def test_a_failing_or_garbled_ip_refuses_too(fake_node, command, answer):
    node = fake_node("guide-intel")
    node.commands[command] = answer
    found = facts(node)
    assert found["vfio_host"]["network_error"]
    plan = make_plan(found, {"devices": [{"interface": "enp2s0"}]})
    assert len(plan["errors"]) == 1 and "addresses and routes could not be read" in plan["errors"][0]


def test_a_non_network_device_is_not_held_back_by_unknown_addresses(fake_node):
    node = fake_node("guide-intel")
    node.commands["ip -j addr show"] = None
    plan = make_plan(facts(node), {"devices": [{"address": "0000:00:02.0"}]})  # the iGPU
    assert plan["errors"] == []


# --- Open vSwitch ---------------------------------------------------------------------------------

INTERFACES_OVS = """\
auto lo
iface lo inet loopback

auto eno1
iface eno1 inet manual
    ovs_type OVSPort
    ovs_bridge vmbr0

auto vmbr0
iface vmbr0 inet manual
    ovs_type OVSBridge
    ovs_ports eno1 mgmt

auto mgmt
iface mgmt inet static
    address 192.0.2.10/24
    gateway 192.0.2.1
    ovs_type OVSIntPort
    ovs_bridge vmbr0
"""


def _ovs(vsctl=True, interfaces=True):
    def mutate(profile):
        profile["interfaces"] = [
            {"name": "vmbr0", "kind": "ovs", "lowers": ["eno1"]},
            {"name": "mgmt", "kind": "ovs-int", "lowers": [], "bridge": "vmbr0", "addresses": ["192.0.2.10/24"],
             "default_via": "192.0.2.1"}]
        profile["ovs_vsctl"] = vsctl
        if interfaces:
            profile["files"]["/etc/network/interfaces"] = INTERFACES_OVS
    return mutate


@pytest.mark.parametrize(("vsctl", "interfaces"), [(True, True), (True, False), (False, True)])
def test_a_port_of_an_ovs_bridge_with_the_management_address_is_refused(fake_node, vsctl, interfaces):
    node = fake_node("guide-intel", mutate=_ovs(vsctl, interfaces))
    found = facts(node)
    eno1 = next(n for d in found["vfio_pci_devices"] for n in d["netdevs"] if n["name"] == "eno1")
    assert eno1["master"] == "ovs-system"
    assert eno1["uppers"] == ["vmbr0", "mgmt"]
    plan = make_plan(found, {"devices": [{"interface": "eno1"}]})
    assert len(plan["errors"]) == 1
    assert "eno1: mgmt holds 192.0.2.10/24" in plan["errors"][0]
    assert "eno1: mgmt: default route (ipv4)" in plan["errors"][0]


def test_an_ovs_port_whose_bridge_cannot_be_found_is_refused(fake_node):
    node = fake_node("guide-intel", mutate=_ovs(vsctl=False, interfaces=False))
    plan = make_plan(facts(node), {"devices": [{"interface": "eno1"}]})
    assert len(plan["errors"]) == 1
    assert ("eno1 is an Open vSwitch port whose bridge is unknown (not in ovs-vsctl or /etc/network/interfaces)"
            in plan["errors"][0])


# --- the boot disk ----------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", [{"address": "0000:01:00.0"}, {"id": "144d:a80a"}])
def test_the_controller_holding_root_is_refused_even_when_forced(fake_node, entry):
    plan = plan_for(fake_node, "guide-intel", [dict(entry, force=True)])
    assert plan["errors"] == [
        "passthrough_devices[0] (0000:01:00.0): refusing - 0000:01:00.0 (Non-Volatile memory controller, holds /, "
        "holds swap /dev/dm-1): the node's storage would go with it"]


def test_zfs_pool_members_under_nvme_multipath_are_traced(fake_node):
    found = facts(fake_node("amd-zfs-uefi"))
    nvme = next(d for d in found["vfio_pci_devices"] if d["address"] == "0000:01:00.0")
    assert nvme["storage"] == ["holds /boot/efi", "holds ZFS pool rpool (/)"]
    assert found["vfio_host"]["storage_problems"] == []
    plan = make_plan(found, {"devices": [{"address": "0000:01:00.0"}]})
    assert "the node's storage would go with it" in plan["errors"][0]


def test_a_zfs_root_without_zpool_refuses_every_device(fake_node):
    node = fake_node("amd-zfs-uefi")
    node.commands["zpool status -P"] = None
    found = facts(node)
    assert found["vfio_host"]["storage_problems"] == [
        "ZFS pools rpool are mounted but their disks are unknown: zpool not found"]
    plan = make_plan(found, {"devices": [{"interface": "enp6s0"}]})
    assert plan["errors"] == [
        "passthrough_devices[0] (0000:06:00.0): refusing - the node's storage could not be traced to PCI functions: "
        "ZFS pools rpool are mounted but their disks are unknown: zpool not found - set force: true on this entry to "
        "override"]


def test_unreadable_mounts_refuse_every_device(fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p.pop("storage"))
    plan = make_plan(facts(node), {"devices": [{"interface": "enp2s0"}]})
    assert len(plan["errors"]) == 1
    assert "mounted file systems unknown" in plan["errors"][0]


def _btrfs_raid1_root(profile):
    """/ on btrfs RAID1 over the NVMe disk and a second disk on the igc card's slot (a stand-in HBA)."""
    storage = profile["storage"]
    storage["disks"].append({"name": "sdb", "dev": "8:16", "pci": "0000:02:00.0", "partitions": {"sdb1": "8:17"}})
    storage["stacked"] = []
    storage["swaps"] = []
    storage["mounts"] = [{"point": "/", "dev": "0:31", "fstype": "btrfs", "source": "/dev/nvme0n1p3"}]
    storage["btrfs"] = {"4a5b6c7d-0000-4000-8000-000000000001": ["nvme0n1p3", "sdb1"]}


def test_every_member_of_a_btrfs_root_is_traced(fake_node):
    found = facts(fake_node("guide-intel", mutate=_btrfs_raid1_root))
    holders = {d["address"]: d["storage"] for d in found["vfio_pci_devices"] if d["storage"]}
    assert holders == {"0000:01:00.0": ["holds btrfs /"], "0000:02:00.0": ["holds btrfs /"]}
    assert found["vfio_host"]["storage_problems"] == []
    plan = make_plan(found, {"devices": [{"interface": "enp2s0", "force": True}]})
    assert "the node's storage would go with it" in plan["errors"][0]


def test_a_btrfs_root_whose_members_are_not_listed_refuses_every_device(fake_node):
    def unlisted(profile):
        _btrfs_raid1_root(profile)
        profile["storage"]["btrfs"] = {}
    found = facts(fake_node("guide-intel", mutate=unlisted))
    problems = found["vfio_host"]["storage_problems"]
    assert len(problems) == 1
    assert problems[0].startswith("btrfs on nvme0n1p3 (/) is mounted but its member devices are not listed under ")
    assert make_plan(found, {"devices": [{"interface": "enp2s0"}]})["errors"]


def test_a_network_share_is_not_a_storage_refusal(fake_node):
    def nfs(profile):
        profile["storage"]["mounts"].append({"point": "/mnt/pve/backup", "dev": "0:52", "fstype": "nfs4",
                                             "source": "192.0.2.20:/backup"})
    found = facts(fake_node("guide-intel", mutate=nfs))
    assert found["vfio_host"]["storage_problems"] == []
    assert make_plan(found, {"devices": [{"interface": "enp2s0"}]})["errors"] == []


def test_storage_below_no_pci_function_holds_nothing_on_pci(fake_node):
    def iscsi(profile):
        profile["storage"]["disks"].append({"name": "sdc", "dev": "8:32",
                                            "sysfs": "platform/host3/session1/target3:0:0/3:0:0:0/block"})
        profile["storage"]["mounts"].append({"point": "/mnt/iscsi", "dev": "8:32", "fstype": "ext4",
                                             "source": "/dev/sdc"})
    found = facts(fake_node("guide-intel", mutate=iscsi))
    assert found["vfio_host"]["storage_problems"] == []
    assert [d["address"] for d in found["vfio_pci_devices"] if d["storage"]] == ["0000:01:00.0"]


def test_a_device_mapper_stack_whose_members_cannot_be_listed_is_untraceable(fake_node):
    def no_slaves(profile):
        profile["storage"]["stacked"][0]["slaves"] = []
    found = facts(fake_node("guide-intel", mutate=no_slaves))
    assert "cannot trace dm-0 (holds /) to a PCI function" in found["vfio_host"]["storage_problems"]
    assert make_plan(found, {"devices": [{"interface": "enp2s0"}]})["errors"]


def test_the_group_message_names_what_the_siblings_hold_and_never_suggests_the_root_disk(fake_node):
    plan = plan_for(fake_node, "chipset-group", [{"interface": "enp3s0"}])
    assert plan["errors"][0] == (
        "passthrough_devices[0] (0000:03:00.0): IOMMU group 5 is not isolated - it also holds 0000:00:14.0 (USB "
        "controller), 0000:00:17.0 (SATA controller, holds /, holds /boot/efi, holds swap /dev/dm-1), 0000:02:00.0 "
        "(Ethernet controller); this group cannot leave the host: 0000:00:17.0 holds the node's storage")
    assert "refusing - IOMMU group sibling 0000:00:17.0 (SATA controller" in plan["errors"][1]


# --- hand-made vfio configuration -----------------------------------------------------------------

def _files(**files):
    return lambda profile: profile["files"].update(files)


def test_a_foreign_ids_line_is_refused_with_file_and_line(fake_node):
    mutate = _files(**{"/etc/modprobe.d/vfio.conf": "# by hand\noptions vfio-pci ids=8086:15f3\n"})
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], mutate=mutate)
    assert plan["errors"] == [
        "foreign vfio-pci ids at /etc/modprobe.d/vfio.conf:2 ('options vfio-pci ids=8086:15f3'): kmod joins option "
        "lines and the kernel keeps only the last ids=, so it overrides the role's ids= or is overridden by it - "
        "remove that line, or set passthrough_adopt: true to take it over"]


def test_a_foreign_ids_line_that_takes_an_unselected_device_is_refused_with_address_binding(fake_node):
    mutate = _files(**{"/etc/modprobe.d/vfio.conf": "options vfio_pci ids=8086:1521 disable_vga=1\n"})
    plan = plan_for(fake_node, "dual-port-igb", [{"interface": "enp1s0f1"}], mutate=mutate)
    assert plan["address_binds"] and plan["ids"] == []
    assert plan["errors"] == [
        "foreign vfio-pci ids at /etc/modprobe.d/vfio.conf:1 ('options vfio_pci ids=8086:1521 disable_vga=1'): it "
        "binds 0000:01:00.0, which is not selected - remove that line, or set passthrough_adopt: true to take it "
        "over"]


def test_harmless_foreign_lines_are_reported_not_refused(fake_node):
    mutate = _files(**{"/etc/modprobe.d/kvm.conf": "options vfio_iommu_type1 allow_unsafe_interrupts=1\n",
                       "/etc/modules": "vfio\nvfio_pci # by hand\n"})
    node = fake_node("guide-intel", mutate=mutate)
    found = facts(node)
    kinds = [(e["file"], e["line"], e["kind"], e["module"]) for e in found["vfio_host"]["vfio_config"]]
    assert kinds == [("/etc/modprobe.d/kvm.conf", 1, "options", "vfio_iommu_type1"),
                     ("/etc/modules", 1, "load", "vfio"), ("/etc/modules", 2, "load", "vfio_pci")]
    assert make_plan(found, {"devices": [{"interface": "enp2s0"}]})["errors"] == []


def test_a_driverctl_override_of_a_selected_device_is_refused(fake_node):
    mutate = _files(**{"/etc/driverctl.d/pci-0000:02:00.0": "igc\n"})
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], mutate=mutate)
    assert plan["errors"] == [
        "driverctl override at /etc/driverctl.d/pci-0000:02:00.0:1 ('igc') binds 0000:02:00.0 to igc at every boot - "
        "remove it with driverctl unset-override 0000:02:00.0"]


# --- several kernels ---------------------------------------------------------------------------------

def _kernels(*releases):
    return _files(**{"/boot/vmlinuz-%s" % r: "" for r in releases})


def test_an_older_installed_kernel_gets_intel_iommu_and_no_missing_module(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}],
                    mutate=_kernels("6.5.13-6-pve", "6.1.10-1-pve"))
    assert plan["cmdline_tokens"] == ["intel_iommu=on", "iommu=pt"]
    assert "intel_iommu=on: Intel CPU and kernel 6.1.10-1-pve, 6.5.13-6-pve installed" in plan["reasons"][0]
    # 6.8 lacks vfio_virqfd: listing it would fail module loading there; vfio_pci pulls it in on 6.1.
    assert plan["modules"] == ["vfio", "vfio_iommu_type1", "vfio_pci"]


def test_vfio_virqfd_only_when_every_kernel_has_it(fake_node):
    def old(profile):
        profile["kernel"] = "6.1.0-27-amd64"
        profile["files"]["/boot/vmlinuz-5.15.0-1-pve"] = ""
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0"}], mutate=old)
    assert plan["modules"][-1] == "vfio_virqfd"


# --- MAC selectors ------------------------------------------------------------------------------------

def _bonded(profile):
    for index, perm in ((1, "00:1b:21:00:01:00"), (2, "00:1b:21:00:02:00")):
        net = profile["devices"][index]["netdevs"][0]
        net.update(mac="00:1b:21:00:01:00", permanent_mac=perm)


def test_a_mac_shared_by_bond_slaves_resolves_by_permanent_address(fake_node):
    found = facts(fake_node("bond-vlan", mutate=_bonded))
    enp2 = next(n for d in found["vfio_pci_devices"] for n in d["netdevs"] if n["name"] == "enp2s0")
    assert (enp2["mac"], enp2["permanent_mac"]) == ("00:1b:21:00:01:00", "00:1b:21:00:02:00")
    plan = make_plan(found, {"devices": [{"mac": "00:1b:21:00:02:00", "force": True}]})
    assert [d["address"] for d in plan["devices"]] == ["0000:02:00.0"]


def test_a_mac_carried_by_two_functions_is_ambiguous(fake_node):
    def same(profile):
        for index in (1, 2):
            profile["devices"][index]["netdevs"][0]["mac"] = "00:1b:21:00:01:00"
    plan = plan_for(fake_node, "bond-vlan", [{"mac": "00:1b:21:00:01:00"}], mutate=same)
    assert plan["errors"] == ["passthrough_devices[0].mac: '00:1b:21:00:01:00' is ambiguous - 0000:01:00.0, "
                              "0000:02:00.0 all carry it (bond slaves share the bond's MAC); select by address or "
                              "interface"]


@pytest.mark.parametrize(("item", "message"), [
    ({"interface": "enp2s0", "mapping": "1wan"}, "passthrough_devices[0].mapping: '1wan' is not a Proxmox mapping ID"),
    ({"interface": "enp2s0", "mapping": "wan", "vm": 99}, "passthrough_devices[0].vm: 99 is not a Proxmox VM ID"),
    ({"interface": "enp2s0", "mapping": "wan", "vm": "abc"}, "passthrough_devices[0].vm: 'abc' is not a Proxmox VM ID"),
    ({"interface": "enp2s0", "mapping": "wan", "vm": True}, "passthrough_devices[0].vm: True is not a Proxmox VM ID"),
    ({"interface": "enp2s0", "vm": 100}, "passthrough_devices[0].vm: 100 needs a mapping"),
])
def test_mapping_and_vm_of_a_device_are_checked(fake_node, item, message):
    plan = plan_for(fake_node, "guide-intel", [item])
    assert any(message in e for e in plan["errors"]), plan["errors"]


def test_the_plan_carries_mapping_vm_and_the_proxmox_entry(fake_node):
    plan = plan_for(fake_node, "guide-intel", [{"interface": "enp2s0", "mapping": "wan", "vm": "100"}])
    assert plan["errors"] == []
    device = plan["devices"][0]
    assert (device["mapping"], device["vm"]) == ("wan", 100)
    assert device["proxmox_mapping"] == {"path": "0000:02:00.0", "id": "8086:15f3", "subsystem-id": "8086:0000",
                                         "iommugroup": 12}
