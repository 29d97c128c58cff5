"""Malformed trees never crash discovery: the field is null and a warning names the file."""

from __future__ import annotations

import os
import shutil

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather

IGC = "0000:02:00.0"


def run_gather(node, **kwargs):
    return gather(run=node.run, which=node.which, **node.roots, **kwargs)


def device(result, address=IGC):
    return next(d for d in result["ansible_facts"]["vfio_pci_devices"] if d["address"] == address)


def dev_dir(node, address=IGC):
    return os.path.join(node.roots["sysfs_root"], "bus", "pci", "devices", address)


def test_missing_vendor_file(fake_node):
    node = fake_node("guide-intel")
    os.unlink(os.path.join(dev_dir(node), "vendor"))
    result = run_gather(node)
    assert device(result)["vendor"] is None
    assert device(result)["vendor_name"] is None
    assert device(result)["device"] == "15f3"
    assert any(w.startswith("cannot read ") and w.endswith("/0000:02:00.0/vendor: No such file or directory")
               for w in result["warnings"])


def test_unreadable_attribute(fake_node):
    # Root reads any file regardless of mode, so unreadable is made a directory (EISDIR).
    node = fake_node("guide-intel")
    path = os.path.join(dev_dir(node), "class")
    os.unlink(path)
    os.mkdir(path)
    result = run_gather(node)
    assert device(result)["class"] is None
    assert device(result)["is_network"] is False
    assert "cannot read %s: Is a directory" % path in result["warnings"]


def test_garbage_hex_value(fake_node):
    node = fake_node("guide-intel")
    path = os.path.join(dev_dir(node), "device")
    with open(path, "w") as handle:
        handle.write("not-hex\n")
    result = run_gather(node)
    assert device(result)["device"] is None
    assert "unexpected value 'not-hex' in %s" % path in result["warnings"]


def test_dangling_driver_link(fake_node):
    node = fake_node("guide-intel")
    shutil.rmtree(os.path.join(node.roots["sysfs_root"], "bus", "pci", "drivers", "igc"))
    result = run_gather(node)
    assert device(result)["driver"] is None
    link = os.path.join(dev_dir(node), "driver")
    assert "dangling link %s -> ../../../../bus/pci/drivers/igc" % link in result["warnings"]


def test_dangling_iommu_group_link(fake_node):
    node = fake_node("guide-intel")
    shutil.rmtree(os.path.join(node.roots["sysfs_root"], "kernel", "iommu_groups", "12"))
    result = run_gather(node)
    assert device(result)["iommu_group"] is None
    assert device(result)["iommu_group_peers"] == []
    assert any(w.startswith("dangling link ") and "/iommu_group -> " in w for w in result["warnings"])


def test_dangling_device_link_in_bus_listing(fake_node):
    node = fake_node("guide-intel")
    target = os.path.realpath(dev_dir(node, "0000:00:02.0"))
    shutil.rmtree(target)
    result = run_gather(node)
    gpu = device(result, "0000:00:02.0")
    assert (gpu["vendor"], gpu["class"], gpu["driver"]) == (None, None, None)
    assert device(result)["vendor"] == "8086"
    assert any("0000:00:02.0/vendor" in w for w in result["warnings"])


def test_missing_pci_bus_and_proc_files(fake_node):
    node = fake_node("guide-intel")
    shutil.rmtree(os.path.join(node.roots["sysfs_root"], "bus"))
    os.unlink(os.path.join(node.roots["procfs_root"], "cmdline"))
    os.unlink(os.path.join(node.roots["procfs_root"], "cpuinfo"))
    result = run_gather(node)
    facts = result["ansible_facts"]
    assert facts["vfio_pci_devices"] == []
    assert facts["vfio_host"]["cmdline"] == []
    assert facts["vfio_host"]["cpu_vendor"] is None
    assert any(w.startswith("cannot list ") and w.endswith("/bus/pci/devices: No such file or directory")
               for w in result["warnings"])
    assert any(w.endswith("/cmdline: No such file or directory") for w in result["warnings"])


def test_missing_kernel_release_skips_modules_alias(fake_node):
    node = fake_node("guide-intel")
    os.unlink(os.path.join(node.roots["procfs_root"], "sys", "kernel", "osrelease"))
    result = run_gather(node)
    assert result["ansible_facts"]["vfio_host"]["kernel_release"] is None
    assert result["ansible_facts"]["vfio_host"]["modules_alias_found"] is False
    assert device(result)["modules"] == []


def test_no_pci_ids_and_no_modules_alias(fake_node):
    node = fake_node("guide-intel")
    root = node.roots["etc_root"]
    os.unlink(os.path.join(root, "usr", "share", "misc", "pci.ids"))
    shutil.rmtree(os.path.join(root, "lib", "modules"))
    result = run_gather(node)
    assert result["warnings"] == []
    igc = device(result)
    assert (igc["vendor_name"], igc["device_name"], igc["class_name"], igc["modules"]) == (None, None, None, [])
    assert igc["vendor"] == "8086"


def test_ip_failing_and_unparsable(fake_node):
    node = fake_node("guide-intel")
    node.commands["ip -j addr show"] = "{not json"
    node.commands["ip -j -4 route show default"] = None
    result = run_gather(node)
    eno1 = device(result, "0000:00:1f.6")["netdevs"][0]
    assert (eno1["addresses"], eno1["default_route"], eno1["management"]) == ([], False, False)
    assert any(w.startswith("cannot parse output of /usr/sbin/ip -j addr show") for w in result["warnings"])
    assert "/usr/sbin/ip -j -4 route show default exited 127: ip -j -4 route show default: not simulated" \
        in result["warnings"]


def test_no_ip_binary(fake_node):
    node = fake_node("guide-intel")
    for key in [k for k in node.commands if k.startswith("ip ")]:
        node.commands[key] = None
    result = run_gather(node)
    assert "ip (iproute2) not found: addresses and default routes unknown" in result["warnings"]
    assert result["ansible_facts"]["vfio_host"]["management_interfaces"] == []


def test_command_raising_oserror(fake_node):
    node = fake_node("amd-zfs-uefi")

    def run(argv):
        if argv[-1] == "status":
            raise OSError("exec format error")
        return node.run(argv)

    result = gather(run=run, which=node.which, **node.roots)
    assert "/usr/sbin/proxmox-boot-tool status failed: exec format error" in result["warnings"]
    # Without the tool's answer the files still tell systemd-boot.
    assert result["ansible_facts"]["vfio_host"]["boot_loader"]["name"] == "systemd-boot"


def test_boot_loader_unrecognised(fake_node):
    node = fake_node("guide-intel")
    root = node.roots["etc_root"]
    os.unlink(os.path.join(root, "etc", "default", "grub"))
    os.unlink(os.path.join(root, "boot", "grub", "grub.cfg"))
    result = run_gather(node)
    assert result["ansible_facts"]["vfio_host"]["boot_loader"]["name"] == "unknown"
    assert any(w.startswith("boot loader not recognised") for w in result["warnings"])


def test_a_proc_without_process_entries_is_reported_not_read_as_nobody(fake_node):
    # A device on vfio-pci makes discovery look for VMs holding its group; an unreadable /proc is
    # "unknown" (null and why), never "nobody" (an empty dict), so the planners refuse to release.
    def on_vfio(profile):
        next(d for d in profile["devices"] if d["address"] == IGC)["driver"] = "vfio-pci"
    node = fake_node("guide-intel", mutate=on_vfio)
    host = run_gather(node)["ansible_facts"]["vfio_host"]
    assert (host["vfio_users"], host["vfio_users_error"]) == ({}, None)
    roots = dict(node.roots, procfs_root=os.path.join(os.path.dirname(node.roots["procfs_root"]), "gone"))
    host = gather(run=node.run, which=node.which, **roots)["ansible_facts"]["vfio_host"]
    assert host["vfio_users"] is None
    assert host["vfio_users_error"].endswith("gone cannot be read (No such file or directory)")
