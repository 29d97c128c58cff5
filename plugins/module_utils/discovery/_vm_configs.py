# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which PCI functions this node's VM configurations and the cluster's PCI mappings name, and which host
interfaces its containers take.

A VM that is stopped holds nothing open, yet its `hostpciN` names a device it needs at its next
start: removing that device (a VF whose count goes down) leaves a VM that no longer starts.

Read from pmxcfs, as Proxmox writes them:
- /etc/pve/qemu-server/VMID.conf (this node's VMs; qemu-server PVE/QemuServer.pm parse_vm_config):
  `key: value` lines; the current configuration comes first, then `[PENDING]` (applied at the next start)
  and `[snapshot]` sections. `hostpciN` is a property string whose first value without a key is
  `host` (PVE/QemuServer/PCI.pm $hostpci_fmt): `host=BB:DD.F[;...]` or `mapping=NAME`, and more options.
- /etc/pve/mapping/pci.cfg (pve-guest-common src/PVE/Mapping/PCI.pm parse_section_header: a line with the
  mapping's ID alone starts its section, indented `key value` lines follow, an empty line ends it; each
  `map` line is `node=NODE,path=DDDD:BB:DD[.F][;...],id=...`).
A PCI ID without its function names every function of the device; without a domain, domain 0000.
"""

from __future__ import annotations

import os
import re

QEMU_SERVER = "/etc/pve/qemu-server"
LXC = "/etc/pve/lxc"
PCI_MAPPINGS = "/etc/pve/mapping/pci.cfg"
# qemu-server PVE/QemuServer/PCI.pm $PCIRE (domain optional); read without regard to case.
PCI_ID = re.compile(r"^(?:([0-9a-f]{4,}):)?([0-9a-f]{2}):([0-9a-f]{2})(?:\.([0-9a-f]))?$", re.IGNORECASE)
HOSTPCI = re.compile(r"^hostpci\d+$")
VMID_CONF = re.compile(r"^([1-9][0-9]*)\.conf$")


def full_address(address: str) -> str:
    """A host address without its domain is in domain 0000 (pve-common SysFSTools.pm lspci)."""
    address = address.strip().lower()
    return address if address.count(":") == 2 else "0000:" + address


def overlaps(one: str, other: str) -> bool:
    """Two host addresses name the same device: equal, or one names the whole (multi-function) device."""
    one, other = full_address(one), full_address(other)
    return one == other or ("." not in one and other.startswith(one + ".")) or (
        "." not in other and one.startswith(other + "."))


def pci_ids(text: str) -> list[str]:
    """The functions a `;`-separated list of PCI IDs names: `DDDD:BB:DD.F`, or `DDDD:BB:DD` for every function
    of a device. A part that is not a PCI ID is kept as it is written (it names something that cannot be
    matched; the caller treats that as unknown)."""
    return [full_address(part) if PCI_ID.match(part.strip()) else part.strip() for part in text.split(";")]


def _properties(value: str, default_key: str | None) -> dict[str, str]:
    """A Proxmox property string (pve-common src/PVE/JSONSchema.pm parse_property_string): parts split at commas,
    blank parts skipped, `key=value` parts by key, and a part without `=` - wherever it stands - is the default
    key's value."""
    found: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, equals, rest = item.partition("=")
        if not equals:
            if default_key:
                found.setdefault(default_key, item.strip())
            continue
        found.setdefault(key.strip(), rest.strip())
    return found


# qemu-server src/PVE/QemuServer.pm parse_vm_config: a section header alone on its line (any case for
# [PENDING]); options start in column 0, a lower-case key, the value without the blanks around it.
SECTION = re.compile(r"^\[([^\]]*)\]\s*$")
OPTION = re.compile(r"^([a-z][a-z_\-]*\d*):\s*(.+?)\s*$")


def hostpci_options(text: str) -> list[tuple[str, str, str]]:
    """(section, option, value) of every hostpciN line of a VM configuration: the current one ("") and
    [PENDING] ("PENDING"); snapshot and special sections are history or not a device, and do not start."""
    found, section = [], ""
    for line in text.split("\n"):
        header = SECTION.match(line)
        if header:
            section = "PENDING" if header.group(1).upper() == "PENDING" else "other"
            continue
        option = OPTION.match(line)
        if section in ("", "PENDING") and option and HOSTPCI.match(option.group(1)):
            found.append((section, option.group(1), option.group(2)))
    return found


def vm_references(text: str) -> list[dict]:
    """{option, value, pending, ids, mapping} of each hostpciN of one VM configuration."""
    found = []
    for section, option, value in hostpci_options(text):
        fields = _properties(value, "host")
        found.append({"option": option, "value": value, "pending": section == "PENDING",
                      "ids": pci_ids(fields["host"]) if fields.get("host") else [],
                      "mapping": fields.get("mapping") or None})
    return found


# pve-container src/PVE/LXC/Config.pm parse_pct_config: raw LXC keys in the container's own configuration
# (before its first [section]): `lxc.net.N.type: phys` with `lxc.net.N.link: NAME` moves the host's interface
# NAME into the container when it starts - a VF's interface too.
LXC_KEY = re.compile(r"^(lxc\.[a-z0-9_\-.]+)(?::|\s*=)\s*(.*?)\s*$")
LXC_NET = re.compile(r"^lxc\.net\.(\d+)\.(type|link)$")


def ct_interfaces(text: str) -> list[str]:
    """The host interfaces a container's configuration moves into it (lxc.net.N.type phys)."""
    nets: dict[str, dict[str, str]] = {}
    for line in text.split("\n"):
        if SECTION.match(line):
            break
        raw = LXC_KEY.match(line)
        net = LXC_NET.match(raw.group(1)) if raw else None
        if net:
            nets.setdefault(net.group(1), {})[net.group(2)] = raw.group(2)
    return sorted({n["link"] for n in nets.values() if n.get("type") == "phys" and n.get("link")})


# pve-common src/PVE/SectionConfig.pm parse_config: lines split at "\n", comment lines (^\s*#) skipped
# everywhere; outside a section a line that is only the mapping's ID starts one (Mapping/PCI.pm
# parse_section_header); inside it, lines are read until one Perl takes for false ("" or "0") - a line of blanks
# does not end it - and `  key value` lines are its properties.
HEADER = re.compile(r"^(\S+)\s*$")
PROPERTY = re.compile(r"^\s+(\S+)(?:\s+(.*\S))?\s*$")


def mapping_paths(text: str, node: str | None) -> dict[str, list[str]]:
    """{mapping ID: every PCI function its `map` entries for `node` name} of pci.cfg."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.split("\n"):
        if re.match(r"^\s*#", line):
            continue
        if current is None:
            header = HEADER.match(line) if line else None
            if header:
                current = header.group(1)
                found.setdefault(current, [])
            continue
        if line in ("", "0"):
            current = None
            continue
        prop = PROPERTY.match(line)
        if not prop or prop.group(1) != "map" or not prop.group(2):
            continue
        fields = _properties(prop.group(2), None)
        if node is not None and fields.get("node") == node and fields.get("path"):
            found[current] += pci_ids(fields["path"])
    return found


def vm_pci(reader, etc_root: str, node: str | None) -> tuple[dict | None, str | None]:
    """({vms: {VMID: [vm_references()]}, mappings: {ID: [functions on this node]}}, None), or (None, why) when a
    Proxmox node's configurations cannot be read (pmxcfs not mounted, a directory or file unreadable). A host
    without /etc/pve is not a Proxmox node: no VMs, no mappings."""
    try:
        os.stat(os.path.join(etc_root, "etc", "pve"))
    except FileNotFoundError:
        return {"vms": {}, "mappings": {}, "cts": {}}, None
    except OSError as exc:
        return None, "/etc/pve cannot be read (%s)" % (exc.strerror or exc)
    vms, problem = _guest_configs(reader, etc_root, QEMU_SERVER)
    cts, problem = ({}, problem) if problem else _guest_configs(reader, etc_root, LXC)
    mappings, problem = ({}, problem) if problem else _mappings(etc_root, node)
    if problem:
        return None, problem
    references = {vmid: vm_references(text) for vmid, text in vms.items()}
    interfaces = {ctid: ct_interfaces(text) for ctid, text in cts.items()}
    return {"vms": {vmid: refs for vmid, refs in references.items() if refs}, "mappings": mappings,
            "cts": {ctid: links for ctid, links in interfaces.items() if links}}, None


def _guest_configs(reader, etc_root: str, shown: str) -> tuple[dict[str, str], str | None]:
    """{ID: text} of the guest configurations in a pmxcfs directory, or why they cannot be read. No qemu-server
    directory on a Proxmox node means pmxcfs is not mounted; no lxc directory, no containers."""
    directory = os.path.join(etc_root, shown.lstrip("/"))
    try:
        listed = sorted(os.listdir(directory))
    except FileNotFoundError as exc:
        if shown == LXC:
            return {}, None
        return {}, "%s cannot be read (%s) - is pmxcfs (pve-cluster.service) running?" % (shown, exc.strerror)
    except OSError as exc:
        return {}, "%s cannot be read (%s)" % (shown, exc.strerror or exc)
    found = {}
    for name in listed:
        match = VMID_CONF.match(name)
        if not match:
            continue
        text = reader.text(os.path.join(directory, name), warn=False, exact=True)
        if text is None:
            return {}, "%s/%s cannot be read" % (shown, name)
        found[match.group(1)] = text
    return found, None


def _mappings(etc_root: str, node: str | None) -> tuple[dict, str | None]:
    """mapping_paths() of pci.cfg (none when there is no such file), or why it cannot be read."""
    try:
        with open(os.path.join(etc_root, PCI_MAPPINGS.lstrip("/")), encoding="utf-8", errors="replace",
                  newline="") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, "%s cannot be read (%s)" % (PCI_MAPPINGS, exc.strerror or exc)
    if node is None:
        return {}, "this node's name is unknown, so its entries in %s cannot be told apart" % PCI_MAPPINGS
    return mapping_paths(text, node), None
