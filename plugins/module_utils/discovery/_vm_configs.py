# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which PCI functions this node's VM configurations and the cluster's PCI mappings name.

A VM that is stopped holds nothing open, yet its `hostpciN` names a device it needs at its next
start: removing that device (a VF whose count goes down) leaves a VM that no longer starts.

Read from pmxcfs, as Proxmox writes them:
- /etc/pve/qemu-server/VMID.conf (this node's VMs; qemu-server PVE/QemuServer.pm parse_vm_config):
  `key: value` lines; the current configuration comes first, then `[PENDING]` (applied at the next start)
  and `[snapshot]` sections. `hostpciN` is a property string whose first value without a key is
  `host` (PVE/QemuServer/PCI.pm $hostpci_fmt): `host=BB:DD.F[;...]` or `mapping=NAME`, and more options.
- /etc/pve/mapping/pci.cfg (pve-guest-common src/PVE/Mapping/PCI.pm parse_section_header: a line with the
  mapping's ID alone starts its section, indented `key value` lines follow, a blank line ends it; each
  `map` line is `node=NODE,path=DDDD:BB:DD[.F][;...],id=...`).
A PCI ID without its function names every function of the device; without a domain, domain 0000.
"""

from __future__ import annotations

import os
import re

QEMU_SERVER = "/etc/pve/qemu-server"
PCI_MAPPINGS = "/etc/pve/mapping/pci.cfg"
# qemu-server PVE/QemuServer/PCI.pm $PCIRE (domain optional); read without regard to case.
PCI_ID = re.compile(r"^(?:([0-9a-f]{4,}):)?([0-9a-f]{2}):([0-9a-f]{2})(?:\.([0-9a-f]))?$", re.IGNORECASE)
HOSTPCI = re.compile(r"^hostpci\d+$")
VMID_CONF = re.compile(r"^([1-9][0-9]*)\.conf$")


def pci_ids(text: str) -> list[str]:
    """The functions a `;`-separated list of PCI IDs names: `DDDD:BB:DD.F`, or `DDDD:BB:DD` for every function
    of a device. A part that is not a PCI ID is kept as it is written (it names something that cannot be
    matched; the caller treats that as unknown)."""
    found = []
    for part in text.split(";"):
        match = PCI_ID.match(part.strip())
        if not match:
            found.append(part.strip())
            continue
        domain, bus, device, function = match.groups()
        name = "%s:%s:%s" % ((domain or "0000").lower(), bus.lower(), device.lower())
        found.append(name + ("." + function.lower() if function else ""))
    return found


def names(reference: str, address: str) -> bool:
    """Whether a PCI ID as pci_ids() gives it names the function `address` (DDDD:BB:DD.F)."""
    return reference == address.lower() or ("." not in reference and address.lower().rsplit(".", 1)[0] == reference)


def _properties(value: str, default_key: str | None) -> dict[str, str]:
    """A Proxmox property string: `key=value` items split at commas, the first item without a key is the
    default key's value."""
    found: dict[str, str] = {}
    for index, item in enumerate(value.split(",")):
        key, equals, rest = item.partition("=")
        if not equals:
            if index == 0 and default_key:
                found.setdefault(default_key, item.strip())
            continue
        found.setdefault(key.strip(), rest.strip())
    return found


def hostpci_options(text: str) -> list[tuple[str, str, str]]:
    """(section, option, value) of every hostpciN line of a VM configuration: the current one ("") and
    [PENDING] ("PENDING"); snapshot sections are history and do not start."""
    found, section = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        if section not in ("", "PENDING") or stripped.startswith("#"):
            continue
        key, colon, value = stripped.partition(":")
        if colon and HOSTPCI.match(key.strip()):
            found.append((section, key.strip(), value.strip()))
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


def mapping_paths(text: str, node: str | None) -> dict[str, list[str]]:
    """{mapping ID: every PCI function its `map` entries for `node` name} of pci.cfg."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        if line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            header = line.split()
            current = header[0] if len(header) == 1 else None
            if current:
                found.setdefault(current, [])
            continue
        words = line.split(None, 1)
        if current is None or words[0] != "map" or len(words) < 2:
            continue
        fields = _properties(words[1], None)
        if node is not None and fields.get("node") == node and fields.get("path"):
            found[current] += pci_ids(fields["path"])
    return found


def vm_pci(reader, etc_root: str, node: str | None) -> tuple[dict | None, str | None]:
    """({vms: {VMID: [vm_references()]}, mappings: {ID: [functions on this node]}}, None), or (None, why) when a
    Proxmox node's configurations cannot be read (pmxcfs not mounted, a file unreadable). A host without
    /etc/pve is not a Proxmox node: no VMs, no mappings."""
    pve = os.path.join(etc_root, "etc", "pve")
    if not os.path.isdir(pve):
        return {"vms": {}, "mappings": {}}, None
    configs = os.path.join(etc_root, QEMU_SERVER.lstrip("/"))
    if not os.path.isdir(configs):
        return None, "%s cannot be read (is pmxcfs, pve-cluster.service, running?)" % QEMU_SERVER
    vms = {}
    for name in reader.listdir(configs):
        match = VMID_CONF.match(name)
        if not match:
            continue
        text = reader.text(os.path.join(configs, name), warn=False, exact=True)
        if text is None:
            return None, "%s/%s cannot be read" % (QEMU_SERVER, name)
        vms[match.group(1)] = vm_references(text)
    mappings = {}
    cfg = os.path.join(etc_root, PCI_MAPPINGS.lstrip("/"))
    if os.path.exists(cfg):
        text = reader.text(cfg, warn=False, exact=True)
        if text is None:
            return None, "%s cannot be read" % PCI_MAPPINGS
        if node is None:
            return None, "this node's name is unknown, so its entries in %s cannot be told apart" % PCI_MAPPINGS
        mappings = mapping_paths(text, node)
    return {"vms": {vmid: refs for vmid, refs in vms.items() if refs}, "mappings": mappings}, None
