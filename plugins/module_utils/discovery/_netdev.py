# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network interfaces of PCI functions: topology from sysfs, layer 3 from `ip -j`.

sysfs says what is stacked on what (master, upper_* links: bridges, bonds,
VLANs); `ip -j addr` and `ip -j route show default` say which of those
interfaces hold addresses and default routes.
"""

from __future__ import annotations

import ipaddress
import json
import os

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader


def parse_ip_addr(output: str) -> dict[str, list[dict]]:
    """Map interface name to its addresses from `ip -j addr show` output."""
    result: dict[str, list[dict]] = {}
    for link in json.loads(output or "[]"):
        name = link.get("ifname")
        if not name:
            continue
        addrs = result.setdefault(name, [])
        for info in link.get("addr_info", []):
            if "local" not in info:
                continue
            addrs.append({
                "interface": name,
                "family": "ipv6" if info.get("family") == "inet6" else "ipv4",
                "address": info["local"],
                "prefixlen": info.get("prefixlen"),
                "scope": info.get("scope", "global"),
            })
    return result


def parse_permanent_macs(output: str) -> dict[str, str]:
    """Interface -> permanent MAC, where `ip -j addr` reports one that differs (bond slaves)."""
    return {link["ifname"]: link["permaddr"].lower() for link in json.loads(output or "[]")
            if link.get("ifname") and link.get("permaddr")}


def vf_state(info: dict) -> dict:
    """One entry of `ip -j -d link show`'s vfinfo_list (iproute2 print_vfinfo) as {mac, vlan, spoofchk, trust,
    state}, the keys of passthrough_sriov's per-VF settings."""
    vlans = info.get("vlan_list") or []
    return {"mac": (info.get("address") or info.get("mac") or "").lower(),
            "vlan": (vlans[0].get("vlan") if vlans else info.get("vlan")) or 0,
            "spoofchk": info.get("spoofchk"), "trust": info.get("trust"), "state": info.get("link_state")}


def parse_link_details(output: str) -> tuple[dict[str, dict[int, dict]], dict[str, str]]:
    """From `ip -j -d link show`: (interface -> {VF index: settings} for PFs with VFs, interface -> MAC
    for every link - bridges and bonds too, which sysfs of PCI devices does not show)."""
    vfs: dict[str, dict[int, dict]] = {}
    macs: dict[str, str] = {}
    for link in json.loads(output or "[]"):
        name = link.get("ifname")
        if not name:
            continue
        if link.get("address") and link.get("link_type", "ether") == "ether":
            macs[name] = link["address"].lower()
        if link.get("vfinfo_list"):
            vfs[name] = {int(v["vf"]): vf_state(v) for v in link["vfinfo_list"] if "vf" in v}
    return vfs, macs


def parse_default_routes(output: str) -> set[str]:
    """Interfaces named by `ip -j route show default` (multipath included)."""
    devices: set[str] = set()
    for route in json.loads(output or "[]"):
        if route.get("dev"):
            devices.add(route["dev"])
        for hop in route.get("nexthops", []):
            if hop.get("dev"):
                devices.add(hop["dev"])
    return devices


def interface_holding(addresses: dict[str, list[dict]], wanted: str | None) -> str | None:
    """Name of the interface that holds the given IP address, if any."""
    if not wanted:
        return None
    try:
        target = ipaddress.ip_address(wanted.split("%")[0])
    except ValueError:
        return None
    for name, addrs in sorted(addresses.items()):
        for addr in addrs:
            try:
                if ipaddress.ip_address(addr["address"]) == target:
                    return name
            except ValueError:
                continue
    return None


class NetTopology:
    """Answers questions about one host's interfaces below a sysfs root."""

    def __init__(self, reader: TreeReader, sysfs_root: str, addresses: dict[str, list[dict]],
                 default_route_devs: dict[str, set[str]], management: dict[str, list[str]],
                 ovs_parent: dict[str, str] | None = None, ovs_error: str | None = None,
                 permanent_macs: dict[str, str] | None = None) -> None:
        self.reader = reader
        # Open vSwitch: member -> bridge or bond (ports have no upper_* link, see _ovs.py).
        self.ovs_parent = ovs_parent or {}
        self.ovs_error = ovs_error
        self.permanent_macs = permanent_macs or {}
        self.class_net = os.path.join(sysfs_root, "class", "net")
        self.addresses = addresses
        self.default_route_devs = default_route_devs
        self.management = management

    def _iface_dir(self, name: str) -> str:
        return os.path.join(self.class_net, name)

    def uppers(self, name: str) -> list[str]:
        """Every interface stacked on `name`, recursively (bridge, bond, VLAN...)."""
        seen: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop(0)
            found = [entry[len("upper_"):] for entry in self.reader.listdir(self._iface_dir(current))
                     if entry.startswith("upper_") and entry != "upper_ovs-system"]
            if current in self.ovs_parent:
                found.append(self.ovs_parent[current])
            # Internal ports of an OVS bridge (where Proxmox puts VLAN addresses) ride on every member.
            found += [member for member, parent in sorted(self.ovs_parent.items())
                      if parent == current and not os.path.exists(os.path.join(self._iface_dir(member), "device"))]
            for upper in found:
                if upper not in seen and upper != name:
                    seen.append(upper)
                    pending.append(upper)
        return seen

    def describe(self, name: str, directory: str) -> dict:
        """The netdev entry for an interface whose sysfs directory is given."""
        read = self.reader
        speed = read.integer(os.path.join(directory, "speed"), warn=False)
        uppers = self.uppers(name)
        stack = [name] + uppers
        addrs = [a for iface in stack for a in self.addresses.get(iface, [])]
        routes = sorted(fam for fam, devs in self.default_route_devs.items() if devs & set(stack))
        reasons = sorted({"%s: %s" % (iface, why) for iface in stack for why in self.management.get(iface, [])})
        master = read.link_name(os.path.join(directory, "master"))
        unknown = None
        if master == "ovs-system" and name not in self.ovs_parent:
            unknown = "%s is an Open vSwitch port whose bridge is unknown (%s)" % (
                name, self.ovs_error or "not in ovs-vsctl or /etc/network/interfaces")
        permanent = read.text(os.path.join(directory, "bonding_slave", "perm_hwaddr"), warn=False)
        return {
            "name": name,
            "mac": read.text(os.path.join(directory, "address")),
            "permanent_mac": (permanent or self.permanent_macs.get(name) or "").lower() or None,
            "operstate": read.text(os.path.join(directory, "operstate")),
            "speed": speed if speed is not None and speed >= 0 else None,
            "mtu": read.integer(os.path.join(directory, "mtu")),
            "master": master,
            "uppers": uppers,
            "addresses": addrs,
            "default_route": bool(routes),
            "management": bool(reasons),
            "management_reasons": reasons,
            "management_unknown": unknown,
        }
