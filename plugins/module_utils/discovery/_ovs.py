# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open vSwitch membership: which bridge (or OVS bond) each interface belongs to.

An OVS port has no upper_* link in sysfs, only a `master` link to `ovs-system`,
so the stack of a NIC on an OVS bridge is read from `ovs-vsctl` when it is
installed and from the ovs_* stanzas of /etc/network/interfaces (ifupdown2, as
Proxmox VE writes them) - both, merged.
"""

from __future__ import annotations


def parse_interfaces(text: str) -> dict[str, str]:
    """Member -> its OVS bridge or bond, from `ovs_bridge`, `ovs_ports` and `ovs_bonds` lines."""
    parent: dict[str, str] = {}
    current = None
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in ("iface", "auto", "allow-hotplug", "allow-ovs", "source", "mapping"):
            current = words[1] if words[0] == "iface" and len(words) > 1 else None
            continue
        if current is None:
            continue
        if words[0] == "ovs_bridge" and len(words) > 1:
            parent.setdefault(current, words[1])
        elif words[0] in ("ovs_ports", "ovs_bonds"):
            for member in words[1:]:
                parent.setdefault(member, current)
    return parent


def parse_vsctl(bridges: dict[str, str]) -> dict[str, str]:
    """Interface -> bridge from {bridge: `ovs-vsctl list-ifaces BRIDGE` output}."""
    parent: dict[str, str] = {}
    for bridge, output in bridges.items():
        for name in output.split():
            if name != bridge:
                parent.setdefault(name, bridge)
    return parent
