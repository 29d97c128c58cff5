# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything pci_facts reports, gathered from injectable roots and a command runner."""

from __future__ import annotations

import os
from typing import Callable, Optional, Tuple

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery import _host, _modconf, _ovs, _pci, _storage
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._boot_numvfs import boot_numvfs_lines
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._grub_overrides import cmdline_overrides
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._handmade import handmade, handmade_files
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._netdev import (
    NetTopology,
    interface_holding,
    parse_default_routes,
    parse_ip_addr,
    parse_link_details,
    parse_permanent_macs,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_ids import ModaliasIndex, parse_pci_ids
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._sysfs_conf import numvfs_lines
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vfio_users import VfioUsersUnknown, vfio_users
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vm_configs import vm_pci

# run(argv) -> (rc, stdout, stderr); which(name) -> path or None
Runner = Callable[[list], Tuple[int, str, str]]
Which = Callable[[str], Optional[str]]

PCI_IDS_PATHS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")


def _command(run: Runner, reader: TreeReader, argv: list[str]) -> str | None:
    try:
        rc, out, err = run(argv)
    except OSError as exc:
        reader.warn("%s failed: %s" % (" ".join(argv), exc))
        return None
    if rc != 0:
        reader.warn("%s exited %d: %s" % (" ".join(argv), rc, (err or out).strip()[:200]))
        return None
    return out


def _json_command(run: Runner, reader: TreeReader, argv: list[str], parse, failures: list[str]):
    """Parsed output; on failure the empty answer, with the reason added to `failures`."""
    out = _command(run, reader, argv)
    if out is None:
        failures.append("%s failed" % " ".join([os.path.basename(argv[0])] + argv[1:]))
        return parse("[]")
    try:
        return parse(out)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        reader.warn("cannot parse output of %s: %s" % (" ".join(argv), exc))
        failures.append("cannot parse the output of %s" % " ".join([os.path.basename(argv[0])] + argv[1:]))
        return parse("[]")


def _ovs_membership(run: Runner, which: Which, reader: TreeReader, etc_root: str) -> tuple[dict, str | None]:
    """(member -> OVS bridge or bond, why it may be incomplete) from /etc/network/interfaces and ovs-vsctl."""
    texts = []
    main = os.path.join(etc_root, "etc", "network", "interfaces")
    if os.path.isfile(main):
        texts.append(reader.text(main) or "")
    extra = os.path.join(etc_root, "etc", "network", "interfaces.d")
    texts += [reader.text(os.path.join(extra, n)) or "" for n in reader.listdir(extra)]
    parent = _ovs.parse_interfaces("\n".join(texts))
    vsctl = which("ovs-vsctl")
    if not vsctl:
        return parent, None if not parent else "ovs-vsctl not found"
    bridges = _command(run, reader, [vsctl, "list-br"])
    if bridges is None:
        return parent, "ovs-vsctl list-br failed"
    outputs = {}
    for bridge in bridges.split():
        out = _command(run, reader, [vsctl, "list-ifaces", bridge])
        if out is None:
            return parent, "ovs-vsctl list-ifaces %s failed" % bridge
        outputs[bridge] = out
    return dict(parent, **_ovs.parse_vsctl(outputs)), None


def _first_readable(reader: TreeReader, root: str, relpaths) -> str | None:
    for rel in relpaths:
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            return reader.text(path)
    return None


def _vf_settings(entry: dict, vf_details: dict, details_error: str | None) -> None:
    """A PF's VFs as they are set now ({index, mac, vlan, spoofchk, trust, state}; None: not known, and why)."""
    sriov = entry.get("sriov")
    if not sriov or sriov.get("physfn"):
        return
    interfaces = [n["name"] for n in entry.get("netdevs") or []]
    known = next((vf_details[name] for name in interfaces if name in vf_details), None)
    error = None
    if details_error:
        error = details_error
    elif not sriov.get("num_vfs"):
        known = known or {}
    elif not interfaces:
        error = "the PF has no network interface (its driver is %s)" % entry.get("driver")
    elif known is None:
        error = "ip -d link show %s lists no VFs" % interfaces[0]
    sriov["vf_settings"] = None if error else [dict(state, index=index) for index, state in sorted(known.items())]
    sriov["vf_settings_error"] = error


def _cmdline_length(procfs_root: str) -> int | None:
    """The bytes of /proc/cmdline (blanks as the boot loader passed them), without its final newline."""
    try:
        with open(os.path.join(procfs_root, "cmdline"), "rb") as handle:
            return len(handle.read().rstrip(b"\n"))
    except OSError:
        return None


def _corosync_conf(reader: TreeReader, etc_root: str) -> tuple[str | None, str | None]:
    """corosync.conf's text (pmxcfs' copy; corosync's own when /etc/pve is not mounted) and why it could not be
    read. Missing on nodes outside a cluster: no text, no error."""
    for relative in ("etc/pve/corosync.conf", "etc/corosync/corosync.conf"):
        path = os.path.join(etc_root, relative)
        if os.path.lexists(path):
            text = reader.text(path)
            return text, None if text is not None else "cannot read /%s" % relative
    return None, None


def gather(sysfs_root: str, procfs_root: str, etc_root: str, run: Runner, which: Which,
           connection_address: str | None = None, classes: list[str] | None = None) -> dict:
    """Return {"ansible_facts": {...}, "warnings": [...]}."""
    reader = TreeReader()
    kernel_release = reader.text(os.path.join(procfs_root, "sys", "kernel", "osrelease"))
    groups = _pci.iommu_groups(reader, sysfs_root)

    ip = which("ip")
    # Any failure here leaves the lockout guard blind: it is reported, and the planner refuses.
    net_failures: list[str] = []
    if ip:
        addresses, permanent = _json_command(run, reader, [ip, "-j", "addr", "show"],
                                             lambda out: (parse_ip_addr(out), parse_permanent_macs(out)), net_failures)
        default_devs = {
            "ipv4": _json_command(run, reader, [ip, "-j", "-4", "route", "show", "default"], parse_default_routes,
                                  net_failures),
            "ipv6": _json_command(run, reader, [ip, "-j", "-6", "route", "show", "default"], parse_default_routes,
                                  net_failures),
        }
    else:
        reader.warn("ip (iproute2) not found: addresses and default routes unknown")
        net_failures.append("ip (iproute2) not found")
        addresses, permanent, default_devs = {}, {}, {"ipv4": set(), "ipv6": set()}
    connection_iface = interface_holding(addresses, connection_address)
    if connection_address and not connection_iface:
        reader.warn("connection address %s is not held by any interface" % connection_address)
    reasons = _host.management_reasons(addresses, default_devs, connection_iface, connection_address)
    ovs_parent, ovs_error = _ovs_membership(run, which, reader, etc_root)
    net = NetTopology(reader, sysfs_root, addresses, default_devs, reasons, ovs_parent, ovs_error, permanent)

    addresses_all = _pci.pci_addresses(reader, sysfs_root)
    vendors = set()
    for address in addresses_all:
        vid = reader.hex_id(os.path.join(sysfs_root, "bus", "pci", "devices", address, "vendor"), 4)
        if vid:
            vendors.add(vid)
    pci_ids_text = _first_readable(reader, etc_root, PCI_IDS_PATHS)
    names = parse_pci_ids(pci_ids_text, vendors) if pci_ids_text is not None else None
    alias_text = None
    if kernel_release:
        alias_text = _first_readable(reader, etc_root, ["lib/modules/%s/modules.alias" % kernel_release,
                                                        "usr/lib/modules/%s/modules.alias" % kernel_release])
    aliases = ModaliasIndex(alias_text) if alias_text is not None else None

    zpool = which("zpool")
    zpool_status = _command(run, reader, [zpool, "status", "-P"]) if zpool else None
    holders, storage_problems = _storage.storage_holders(
        reader, sysfs_root, procfs_root, zpool_status,
        None if zpool_status is not None else ("zpool status -P failed" if zpool else "zpool not found"))

    netdevs = _pci.netdevs_by_device(reader, sysfs_root)
    entries = [_pci.read_device(reader, sysfs_root, address, groups, names, aliases, net, netdevs.get(address, []))
               for address in addresses_all]
    # Per-VF settings (MAC, VLAN, trust...) live only in netlink (`ip -d`), and so do the MACs of bridges and bonds;
    # only SR-IOV needs them, so a node without an SR-IOV device does not pay for the call on every run.
    vf_details, link_macs, details_error = {}, None, "no SR-IOV device on this node: not read"
    if any(entry.get("sriov") for entry in entries):
        details_failures: list[str] = []
        vf_details, link_macs = _json_command(run, reader, [ip, "-j", "-d", "link", "show"], parse_link_details,
                                              details_failures) if ip else ({}, {})
        details_error = "; ".join(details_failures) or (None if ip else "ip (iproute2) not found")
    devices = []
    on_vfio = False
    for entry in entries:
        entry["storage"] = holders.get(entry["address"], [])
        _vf_settings(entry, vf_details, details_error)
        on_vfio = on_vfio or entry["driver"] == "vfio-pci"
        if _pci.class_matches(entry["class"], classes or []):
            devices.append(entry)

    users, users_error = {}, None
    if on_vfio:
        try:
            users = vfio_users(procfs_root)
        except VfioUsersUnknown as exc:
            users, users_error = None, str(exc)

    pbt = which("proxmox-boot-tool")
    pbt_status = _command(run, reader, [pbt, "status"]) if pbt else None
    dmesg = which("dmesg")
    kernel_log = None
    if dmesg:
        try:
            rc, out, _err = run([dmesg])
            kernel_log = out if rc == 0 else None
        except OSError:
            kernel_log = None

    corosync_text, corosync_error = _corosync_conf(reader, etc_root)
    sysfs_conf, sysfs_conf_error = numvfs_lines(etc_root)
    boot_numvfs, boot_numvfs_error = boot_numvfs_lines(etc_root)
    host = {
        "iommu_active": bool(groups),
        "interrupt_remapping": _host.interrupt_remapping(kernel_log),
        "cpu_vendor": _host.cpu_vendor(reader, procfs_root),
        "kernel_release": kernel_release,
        # Proxmox names a node by its short host name (PVE::INotify::nodename, from uname -n).
        "node_name": (reader.text(os.path.join(procfs_root, "sys", "kernel", "hostname"), warn=False) or "")
        .split(".")[0] or None,
        "installed_kernels": _host.installed_kernels(reader, etc_root, kernel_release),
        # As the kernel split it: a quoted value with blanks (dyndbg="file x.c +p") is one parameter.
        "cmdline": _modconf.kernel_arg_texts(reader.text(os.path.join(procfs_root, "cmdline")) or ""),
        "cmdline_length": _cmdline_length(procfs_root),
        "boot_loader": _host.boot_loader(reader, sysfs_root, etc_root, pbt_status),
        "vfio_modules_loaded": _host.loaded_vfio_modules(reader, sysfs_root, procfs_root),
        "management_interfaces": [{"interface": name, "reasons": why} for name, why in sorted(reasons.items())],
        "corosync_addresses": _host.corosync_addresses(corosync_text),
        "corosync_error": corosync_error,
        # Every link's MAC (None: `ip -d link` could not be read), for the SR-IOV MAC collision check.
        "link_macs": None if details_error else link_macs,
        "link_macs_error": details_error,
        # sysfsutils lines that set a VF count at boot (/etc/sysfs.conf, /etc/sysfs.d/*.conf).
        "sysfs_conf_numvfs": sysfs_conf,
        "sysfs_conf_error": sysfs_conf_error,
        # ifupdown post-up lines and udev rules that write sriov_numvfs at boot.
        "boot_numvfs": boot_numvfs,
        "boot_numvfs_error": boot_numvfs_error,
        "connection_address": connection_address,
        "network_error": "; ".join(net_failures) or None,
        "storage_problems": storage_problems,
        "vfio_config": _modconf.vfio_config(reader, etc_root),
        "grub_cmdline_overrides": cmdline_overrides(reader, etc_root),
        # Only read when a device is on vfio-pci: who holds its group open (a running VM).
        "vfio_users": users,
        "vfio_users_error": users_error,
        "pci_ids_found": names is not None,
        "modules_alias_found": aliases is not None,
    }
    # The PCI functions VM configurations and this node's PCI mappings name (a stopped VM needs them at its start).
    host["vm_pci"], host["vm_pci_error"] = vm_pci(reader, etc_root, host["node_name"])
    host["handmade"] = handmade(reader, etc_root, host, devices)
    host["handmade_files"] = handmade_files(reader, etc_root, host["handmade"])
    return {
        "ansible_facts": {
            "vfio_pci_devices": sorted(devices, key=lambda d: d["address"]),
            "vfio_iommu_groups": groups,
            "vfio_host": host,
        },
        "warnings": reader.warnings,
    }
