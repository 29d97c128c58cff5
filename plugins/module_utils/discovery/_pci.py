# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI functions and IOMMU groups read from a sysfs tree."""

from __future__ import annotations

import os
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._netdev import NetTopology
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_ids import ModaliasIndex, class_name
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader

# Host bridge, PCI-to-PCI bridge, semi-transparent bridge: they may share an
# IOMMU group with a passed-through device (vfio accepts them).
BRIDGE_CLASSES = ("0600", "0604", "0609")
NETWORK_CLASS = "02"
PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def entry_for(device: dict) -> dict | None:
    """What a mapping entry for this pci_facts device must carry, in Proxmox's format.

    As the GUI sends it: `id` and `subsystem-id` without 0x, `iommugroup` only when the
    device has one (Mapping/PCI.pm assert_valid demands both whenever the hardware has them).
    """
    if not device.get("vendor") or not device.get("device"):
        return None
    entry = {"path": device["address"], "id": "%s:%s" % (device["vendor"], device["device"])}
    if device.get("subsystem_vendor") and device.get("subsystem_device"):
        entry["subsystem-id"] = "%s:%s" % (device["subsystem_vendor"], device["subsystem_device"])
    if device.get("iommu_group") is not None:
        entry["iommugroup"] = int(device["iommu_group"])
    return entry


def netdevs_by_device(reader: TreeReader, sysfs_root: str) -> dict[str, list[tuple[str, str]]]:
    """PCI address -> [(interface, sysfs directory)], from /sys/class/net.

    An interface belongs to the nearest PCI function above it in the device
    path, so virtio-net (…/0000:00:03.0/virtio1/net/enp0s3) is found as well
    as the usual …/0000:02:00.0/net/enp2s0.
    """
    class_net = os.path.join(sysfs_root, "class", "net")
    found: dict[str, list[tuple[str, str]]] = {}
    for name in reader.listdir(class_net):
        real = os.path.realpath(os.path.join(class_net, name))
        addresses = [part for part in real.split(os.sep) if PCI_ADDRESS.match(part)]
        if addresses:
            found.setdefault(addresses[-1], []).append((name, real))
    return found


def iommu_groups(reader: TreeReader, sysfs_root: str) -> dict[str, list[str]]:
    """Group number -> sorted member addresses, from /sys/kernel/iommu_groups."""
    base = os.path.join(sysfs_root, "kernel", "iommu_groups")
    groups: dict[str, list[str]] = {}
    for group in reader.listdir(base):
        groups[group] = reader.listdir(os.path.join(base, group, "devices"), warn=True)
    return dict(sorted(groups.items(), key=lambda item: int(item[0]) if item[0].isdigit() else -1))


def _sriov(reader: TreeReader, directory: str) -> dict | None:
    total = reader.integer(os.path.join(directory, "sriov_totalvfs"), warn=False)
    physfn = reader.link_name(os.path.join(directory, "physfn"))
    if total is None and physfn is None:
        return None
    vfs = [reader.link_name(os.path.join(directory, entry))
           for entry in reader.listdir(directory) if entry.startswith("virtfn")]
    vf_device_path = os.path.join(directory, "sriov_vf_device")
    vf_device = reader.hex_id(vf_device_path, 4) if total is not None and os.path.exists(vf_device_path) else None
    return {
        "total_vfs": total,
        # The device ID its VFs have (the PF's vendor), known before any VF exists.
        "vf_device": vf_device,
        "num_vfs": reader.integer(os.path.join(directory, "sriov_numvfs"), warn=False),
        "physfn": physfn,
        "vfs": sorted(vf for vf in vfs if vf),
    }


def _reset_methods(reader: TreeReader, directory: str) -> list[str]:
    # The kernel hides reset_method when a device has no reset method at all.
    raw = reader.text(os.path.join(directory, "reset_method"), warn=False)
    return raw.split() if raw else []


def read_device(reader: TreeReader, sysfs_root: str, address: str, groups: dict[str, list[str]],
                names: dict | None, aliases: ModaliasIndex | None, net: NetTopology,
                netdevs: list[tuple[str, str]]) -> dict:
    """One PCI function as reported in vfio_pci_devices."""
    directory = os.path.join(sysfs_root, "bus", "pci", "devices", address)
    vendor = reader.hex_id(os.path.join(directory, "vendor"), 4)
    device = reader.hex_id(os.path.join(directory, "device"), 4)
    pci_class = reader.hex_id(os.path.join(directory, "class"), 6)
    modalias = reader.text(os.path.join(directory, "modalias"))
    group = reader.link_name(os.path.join(directory, "iommu_group"))
    numa = reader.integer(os.path.join(directory, "numa_node"), warn=False)
    entry = {
        "address": address,
        "vendor": vendor,
        "device": device,
        "subsystem_vendor": reader.hex_id(os.path.join(directory, "subsystem_vendor"), 4),
        "subsystem_device": reader.hex_id(os.path.join(directory, "subsystem_device"), 4),
        "class": pci_class,
        "revision": reader.hex_id(os.path.join(directory, "revision"), 2),
        "vendor_name": names["vendors"].get(vendor) if names and vendor else None,
        "device_name": names["devices"].get((vendor, device)) if names and vendor and device else None,
        "class_name": class_name(names, pci_class) if names else None,
        "driver": reader.link_name(os.path.join(directory, "driver")),
        "modalias": modalias,
        "modules": aliases.modules_for(modalias) if aliases and modalias else [],
        "iommu_group": group,
        "iommu_group_peers": [a for a in groups.get(group, []) if a != address] if group else [],
        "is_bridge": bool(pci_class) and pci_class[:4] in BRIDGE_CLASSES,
        "is_network": bool(pci_class) and pci_class.startswith(NETWORK_CLASS),
        "numa_node": numa if numa is not None and numa >= 0 else None,
        "reset_methods": _reset_methods(reader, directory),
        "sriov": _sriov(reader, directory),
        # pve-common SysFSTools.pm pci_device_info: mdev_supported_types, or nvidia's own directory.
        "mdev": os.path.isdir(os.path.join(directory, "mdev_supported_types"))
        or os.path.isdir(os.path.join(directory, "nvidia")),
        "netdevs": [],
    }
    entry["proxmox_mapping"] = entry_for(entry)
    for name, net_dir in sorted(netdevs):
        entry["netdevs"].append(net.describe(name, net_dir))
    return entry


def pci_addresses(reader: TreeReader, sysfs_root: str) -> list[str]:
    return reader.listdir(os.path.join(sysfs_root, "bus", "pci", "devices"), warn=True)


def class_matches(pci_class: str | None, filters: list[str]) -> bool:
    """True when no filter is set or the class starts with one of the hex prefixes."""
    if not filters:
        return True
    return bool(pci_class) and any(pci_class.startswith(f.lower().replace("0x", "")) for f in filters)
