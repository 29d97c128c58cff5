# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE PCI resource mappings: entries in Proxmox's own format, parsed, compared, checked.

The rules come from Proxmox's sources, cited where they are used:
- pve-guest-common src/PVE/Mapping/PCI.pm: the `map` entry format ($map_fmt, $PCI_RE) and
  assert_valid (what a node checks before a VM starts);
- pve-common src/PVE/JSONSchema.pm: mapping IDs ($CONFIGID_RE) and node names
  (pve_verify_node_name);
- pve-common src/PVE/SysFSTools.pm: pci_device_info, what the hardware side of a check reads.
Pure functions; the module vfio.proxmox.pci_mapping runs `pvesh` around them.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci import entry_for
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._configid import CONFIGID_RE

# pve-common JSONSchema.pm pve_verify_node_name
NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$")
# pve-guest-common Mapping/PCI.pm: my $PCI_RE = "[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?"
PCI_RE = r"[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?"
PATH_RE = re.compile(r"^(?:%s;)*%s$" % (PCI_RE, PCI_RE))
# Mapping/PCI.pm $map_fmt: id and subsystem-id patterns
ID_RE = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$")
# The order the GUI writes (www/manager6/form/MultiPCISelector.js); comparison ignores it.
KEYS = ("node", "path", "id", "subsystem-id", "iommugroup", "description")
HARDWARE_KEYS = ("id", "subsystem-id", "iommugroup")
NODE_FIELD_RE = re.compile(r"(?:^|,)node=([^,]+)")


class MappingError(ValueError):
    """A desired mapping that Proxmox would refuse, or that does not match the hardware."""


def parse_entry(text: str) -> dict:
    """A `map` property string (`node=pve1,path=0000:02:00.0,id=8086:15f3,...`) as a dict.

    As pve-common JSONSchema.pm parse_property_string reads it: empty fields (and so a
    trailing comma) are skipped, an empty value is refused.
    """
    entry: dict = {}
    for part in text.split(","):
        if part == "":
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise MappingError("map entry %r: %r is not key=value" % (text, part))
        if value == "":
            raise MappingError("map entry %r: %s has an empty value" % (text, key))
        if key in entry:
            raise MappingError("map entry %r: %s given twice" % (text, key))
        entry[key] = value
    return normalize(entry, text, fold_case=False)


def normalize(entry: dict, where: str = "", fold_case: bool = True) -> dict:
    """Canonical values, so entries compare by meaning: hex without 0x, an int group.

    Letter case is meaning to Proxmox: assert_valid compares the IDs as strings after
    s/0x//g, and sysfs gives lowercase, so an entry with 8086:15F3 fails every VM start.
    Desired entries are folded to lowercase (what works); an existing one keeps its case,
    so a wrong case shows as a difference and is rewritten.
    """
    where = where or repr(entry)
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise MappingError("map entry %s: unknown key %s (known: %s)" % (where, ", ".join(unknown), ", ".join(KEYS)))
    out = {}
    for key in KEYS:
        value = entry.get(key)
        if value is None or value == "":
            continue
        if key in ("id", "subsystem-id"):
            value = str(value).replace("0x", "")
            value = value.lower() if fold_case else value
        elif key == "path":
            value = str(value).lower() if fold_case else str(value)
        elif key == "iommugroup":
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise MappingError("map entry %s: iommugroup %r is not an integer" % (where, value)) from None
            # assert_valid compares the group as a string: an existing `012` or `+12` fails every VM start, so
            # it is kept as written and shows as a difference (desired entries are canonical).
            value = number if fold_case or str(number) == str(value) else str(value)
        out[key] = value if key == "iommugroup" else str(value)
    return out


def description_problem(text: str | None, in_entry: bool) -> str | None:
    """Why Proxmox would refuse (or never keep) this description, or None.

    pve-guest-common Mapping/PCI.pm: descriptions are at most 4096 characters; an entry's is a
    field of the `map` property string, where a comma ends the value (pve-common JSONSchema.pm);
    pve-common SectionConfig.pm refuses a line break in any value. pmxcfs hands the parser raw
    bytes (pve-cluster IPCC.xs), so text above U+00FF reads back double-encoded: it would be
    rewritten on every run, so it is refused too.
    """
    if text is None:
        return None
    if len(text) > 4096:
        return "is %d characters long; Proxmox takes at most 4096" % len(text)
    if "\n" in text or "\r" in text:
        return "holds a line break, which Proxmox's configuration file cannot store"
    if in_entry and "," in text:
        return "holds a comma, which ends the field in Proxmox's map entry format"
    wide = sorted({char for char in text if ord(char) > 0xFF})
    if wide:
        return ("holds %s (above U+00FF): Proxmox's cluster file system hands it back double-encoded, so it "
                "would differ on every run" % ", ".join("U+%04X" % ord(char) for char in wide))
    return None


def entry_node(text: str) -> str | None:
    """The node an entry is for - also for an entry that does not parse otherwise (a typo in another field),
    so the task that decides that node can replace it."""
    try:
        return parse_entry(text).get("node")
    except MappingError:
        match = NODE_FIELD_RE.search(text)
        return match.group(1) if match else None


def merged(current: list[str], entries: list[dict], nodes: list[str]) -> list[str]:
    """The `map` after a write that decides the entries of `nodes` only.

    Entries of every other node are kept as Proxmox holds them (the same text), so a run that
    covers part of a cluster (`--limit`, a node unreachable) never drops what it did not plan.
    """
    return [text for text in current if entry_node(text) not in nodes] + [format_entry(entry) for entry in entries]


def entry_nodes(texts: list[str]) -> list[str]:
    """The nodes that have an entry in a `map`, in order."""
    out = []
    for text in texts:
        node = entry_node(text)
        if node and node not in out:
            out.append(node)
    return out


def format_entry(entry: dict) -> str:
    return ",".join("%s=%s" % (key, entry[key]) for key in KEYS if key in entry)


def validate(name: str, entries: list[dict], nodes: list[str] | None) -> list[dict]:
    """Normalized entries, or MappingError naming the entry: what Proxmox's schema refuses,
    plus what would make the mapping ambiguous (one node+path twice) or point at no node."""
    if not CONFIGID_RE.match(name or ""):
        raise MappingError("name %r is not a Proxmox mapping ID (a letter, then letters, digits, _ or -; "
                           "at least 2 characters)" % name)
    out, seen = [], {}
    for index, raw in enumerate(entries):
        where = "entries[%d]" % index
        entry = normalize(parse_entry(raw) if isinstance(raw, str) else raw, where)
        for key in ("node", "path", "id"):
            if key not in entry:
                raise MappingError("%s: %s is required" % (where, key))
        if not NODE_RE.match(entry["node"]):
            raise MappingError("%s: node %r is not a valid node name" % (where, entry["node"]))
        if nodes is not None and entry["node"] not in nodes:
            raise MappingError("%s: node %r is not a member of this cluster (members: %s)"
                               % (where, entry["node"], ", ".join(sorted(nodes)) or "none"))
        problem = description_problem(entry.get("description"), in_entry=True)
        if problem:
            raise MappingError("%s: description %r %s" % (where, _short(entry["description"]), problem))
        if not PATH_RE.match(entry["path"]):
            raise MappingError("%s: path %r is not a PCI address such as 0000:02:00.0" % (where, entry["path"]))
        for key in ("id", "subsystem-id"):
            if key in entry and not ID_RE.match(entry[key]):
                raise MappingError("%s: %s %r is not vendor:device such as 8086:15f3" % (where, key, entry[key]))
        key = (entry["node"], entry["path"])
        if key in seen:
            raise MappingError("%s: node %s path %s is already entries[%d]" % (where, key[0], key[1], seen[key]))
        seen[key] = index
        out.append(entry)
    return out


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def same_entries(current: list[str], desired: list[dict]) -> bool:
    """True when the mapping's `map` holds exactly the desired entries, in any order."""
    try:
        have = sorted(format_entry(parse_entry(text)) for text in current)
    except MappingError:
        return False  # an entry we cannot read is rewritten
    return have == sorted(format_entry(entry) for entry in desired)


def hardware_problems(entry: dict, devices: dict, mdev: bool) -> list[str]:
    """Why this node would refuse the entry at VM start, as Mapping/PCI.pm assert_valid checks it.

    `devices` is pci_facts' view of this node, address -> device; `mdev` is the mapping's
    flag, which must match whether the device offers mediated devices. Every path of the
    entry is checked; the IOMMU group only on the first (assert_valid does the same).
    """
    problems = []
    for index, given in enumerate(entry["path"].split(";")):
        # assert_valid: a path without its function maps the whole device; .0 must exist
        path = given if "." in given else given + ".0"
        device = devices.get(path)
        if device is None:
            problems.append("pci device '%s' not found" % path)
            continue
        expected = entry_for(device) or {}
        for key in HARDWARE_KEYS:
            if key == "iommugroup" and index > 0:
                continue
            want, have = expected.get(key), entry.get(key)
            if want is None and have is None:
                continue
            if have is None:
                problems.append("missing expected property '%s' for device '%s' (the hardware has %s)"
                                % (key, path, want))
            elif want is None:
                problems.append("unexpected property '%s' configured for device '%s'" % (key, path))
            elif str(want) != str(have):
                problems.append("'%s' does not match for device '%s' (hardware %s, mapping %s)"
                                % (key, path, want, have))
        if bool(device.get("mdev")) != bool(mdev):
            problems.append("'mdev' does not match for device '%s' (hardware %s, mapping %s)"
                            % (path, int(bool(device.get("mdev"))), int(bool(mdev))))
    return problems


def from_proxmox(dev: dict) -> dict:
    """One entry of Proxmox's `GET /nodes/NODE/hardware/pci` (pve-common SysFSTools.pm lspci) in
    pci_facts' shape: hex without 0x, no IOMMU group as None (Proxmox says -1)."""
    group = dev.get("iommugroup")
    return dict({key: (dev.get(key) or "").replace("0x", "") or None
                 for key in ("vendor", "device", "subsystem_vendor", "subsystem_device", "class")},
                address=dev.get("id"), iommu_group=None if group in (None, -1) else str(group),
                mdev=bool(dev.get("mdev")))


def proxmox_view_differences(devices: list[dict], proxmox: list[dict]) -> list[str]:
    """Where pci_facts and Proxmox's own `GET /nodes/NODE/hardware/pci` (no class hidden) disagree about a
    function: present, vendor/device/subsystem IDs, class, IOMMU group."""
    ours = {d["address"]: d for d in devices}
    theirs = {d.get("id"): from_proxmox(d) for d in proxmox}
    out = []
    for address in sorted(set(ours) | set(theirs)):
        mine, pve = ours.get(address), theirs.get(address)
        if mine is None or pve is None:
            out.append("%s: only %s sees it" % (address, "pci_facts" if pve is None else "Proxmox"))
            continue
        for key in ("class", "device", "iommu_group", "subsystem_device", "subsystem_vendor", "vendor"):
            have = mine.get(key)
            if (str(have) if have is not None else None) != pve[key]:
                out.append("%s: %s is %s for pci_facts, %s for Proxmox" % (address, key, have, pve[key]))
    return out
