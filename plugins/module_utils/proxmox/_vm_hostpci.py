# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What vfio.proxmox.vm_hostpci does: one VM's hostpciN line for a mapping, and nothing else.

Rules from qemu-server: hostpci0..15 ($MAX_HOSTPCI_DEVICES), the `host` default key and
`mapping` exclude each other (src/PVE/QemuServer/PCI.pm parse_hostpci), `pcie=1` needs
a q35 machine ("q35 machine model is not enabled", PCI.pm; parse_machine and
machine_type_is_q35 in src/PVE/QemuServer/Machine.pm), booleans as pve-common
JSONSchema.pm parse_boolean reads them, and a host device given to one VM twice makes its
start fail (PCI.pm). A hostpci device cannot be hot-plugged: the line applies when the VM
next starts.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vm_configs import overlaps
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._configid import CONFIGID_RE
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_entry import (
    MappingError,
    entry_node,
    entry_nodes,
    parse_entry,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import noted_attachment
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError

SLOTS = 16
SLOT_RE = re.compile(r"^hostpci(\d+)$")
# pve-common JSONSchema.pm parse_boolean
TRUE_RE = re.compile(r"^(1|on|yes|true)$", re.IGNORECASE)
FALSE_RE = re.compile(r"^(0|off|no|false)$", re.IGNORECASE)
# qemu-server PCI.pm $hostpci_fmt: the boolean keys
BOOLEAN_KEYS = ("pcie", "rombar", "x-vga", "legacy-igd")


class Refused(Exception):
    pass


def parse(value: str, default_key: str = "host") -> dict:
    """A property string as pve-common JSONSchema.pm parse_property_string splits it: empty fields are
    skipped, a field without `=` is the default key's value."""
    out = {}
    for part in value.split(","):
        if part == "":
            continue
        key, sep, val = part.partition("=")
        out[key if sep else default_key] = val if sep else part
    return out


def boolean(value: str | None) -> str | None:
    if value is None:
        return None
    return "1" if TRUE_RE.match(value) else "0" if FALSE_RE.match(value) else value


def is_q35(config: dict) -> bool:
    """Machine.pm: `machine` is a property string whose default key is `type`; q35 when the type says so."""
    return "q35" in (parse(config.get("machine") or "", default_key="type").get("type") or "")


def wanted_value(params: dict, current: str | None = None) -> str:
    """The line: the keys this module manages (mapping, pcie, rombar when given), then every other option the
    line already has (x-vga, romfile, driver, ... set in the GUI), as it is."""
    value = "mapping=%s" % params["mapping"]
    if params["pcie"]:
        value += ",pcie=1"
    if params["rombar"] is not None:
        value += ",rombar=%d" % int(params["rombar"])
    managed = {"mapping", "pcie"} | ({"rombar"} if params["rombar"] is not None else set())
    kept = [(key, val) for key, val in parse(current or "").items() if key not in managed]
    return ",".join([value] + ["%s=%s" % kv for kv in kept])


def meaning(value: str) -> dict:
    """A hostpci value as Proxmox reads it: booleans parsed, Proxmox's defaults (pcie=0, rombar=1) filled in."""
    parsed = dict({"pcie": "0", "rombar": "1"}, **parse(value))
    return {key: boolean(val) if key in BOOLEAN_KEYS else val for key, val in parsed.items()}


def same(current: str, wanted: str) -> bool:
    return meaning(current) == meaning(wanted)


def mapping_alternatives(texts: list[str], node: str) -> list[list[str]]:
    """The devices a mapping can give a VM on `node`: one alternative per entry (a pool has several), each the
    entry's `;`-separated addresses (qemu-server PCI.pm parse_hostpci)."""
    out = []
    for text in texts:
        try:
            entry = parse_entry(text)
        except MappingError:
            continue
        if entry.get("node") == node and entry.get("path"):
            out.append(entry["path"].split(";"))
    return out


def vm_line_users(config: dict, name: str) -> list[str]:
    return sorted((key for key, value in config.items() if SLOT_RE.match(key) and parse(value).get("mapping") == name),
                  key=lambda k: int(SLOT_RE.match(k).group(1)))


def plan(config: dict, params: dict, alternatives: list[list[str]] | None = None,
         others: dict | None = None) -> tuple[str | None, str | None, list[str]]:
    """(slot to write, value, slots to delete) - or Refused naming the option and the value.

    alternatives: what this mapping can give the VM on its node; others: mapping name -> the alternatives
    of each other mapping the VM uses there. When every alternative holds a device the VM already has (raw,
    or through a mapping with one alternative), the VM cannot start: qemu-server PCI.pm
    choose_hostpci_devices refuses a device assigned more than once.
    """
    name = params["mapping"]
    slots = {key: value for key, value in config.items() if SLOT_RE.match(key)}
    using = vm_line_users(config, name)
    if params["state"] == "absent":
        return None, None, using
    if params["pcie"] and not is_q35(config):
        raise Refused("pcie: true needs the q35 machine type; VM %s has machine %r (qemu-server: q35 machine model "
                      "is not enabled)" % (params["vmid"], config.get("machine") or "default i440fx"))
    held = []  # (slot, value, address) the VM has for sure
    for key, value in sorted(slots.items()):
        line = parse(value)
        if key in using:
            continue
        if "mapping" in line:
            theirs = (others or {}).get(line["mapping"]) or []
            addresses = theirs[0] if len(theirs) == 1 else []
        else:
            addresses = (line.get("host") or "").split(";")
        held += [(key, value, address) for address in addresses if address]
    clashes = [next(((k, v, a) for mine in alternative for k, v, a in held if overlaps(mine, a)), None)
               for alternative in alternatives or []]
    if clashes and all(clashes):
        key, value, address = clashes[0]
        raise Refused("mapping: VM %s already has %s in %s: %r; mapping %s gives it the same device again, "
                      "and QEMU refuses a device given twice - take that line out first"
                      % (params["vmid"], address, key, value, name))
    value = wanted_value(params)
    requested = None if params["slot"] is None else "hostpci%d" % params["slot"]
    if requested is not None and not 0 <= params["slot"] < SLOTS:
        raise Refused("slot: %d is not between 0 and %d" % (params["slot"], SLOTS - 1))
    if using:
        if requested is not None and requested not in using:
            raise Refused("slot: VM %s already has mapping %s in %s; slot %d asks for %s (remove it first)"
                          % (params["vmid"], name, ", ".join(using), params["slot"], requested))
        slot = requested or using[0]
        value = wanted_value(params, slots[slot])
        return (None if same(slots[slot], value) else slot), value, []
    if requested is not None:
        if requested in slots:
            raise Refused("slot: %s of VM %s holds %r, not this mapping; it is never touched"
                          % (requested, params["vmid"], slots[requested]))
        return requested, value, []
    free = [n for n in range(SLOTS) if "hostpci%d" % n not in slots]
    if not free:
        raise Refused("VM %s has no free hostpci slot (hostpci0-%d are all used)" % (params["vmid"], SLOTS - 1))
    return "hostpci%d" % free[0], value, []


def cluster_vms(pvesh: Pvesh) -> dict:
    """vmid -> node of every VM (qemu) in the cluster's resource list."""
    return {int(r["vmid"]): r["node"] for r in pvesh.get("/cluster/resources", ["--type", "vm"]) or []
            if r.get("type") == "qemu" and r.get("vmid") is not None}


def vms_using(pvesh: Pvesh, name: str) -> list[str]:
    """Every VM of the cluster that uses mapping `name` - in its configuration, as a pending change, or in a
    snapshot it can be rolled back to (qemu-server API2/Qemu.pm `pending` holds current and pending values,
    `snapshot` and `snapshot/NAME/config` the snapshots) - as `VM 100 (hostpci1, on pve1)`."""
    out = []
    for vmid, node in sorted(cluster_vms(pvesh).items()):
        base = "/nodes/%s/qemu/%s" % (node, vmid)
        where = []
        for item in pvesh.get(base + "/pending") or []:
            if not SLOT_RE.match(item.get("key") or ""):
                continue
            if parse(str(item.get("value") or "")).get("mapping") == name:
                where.append(item["key"])
            elif parse(str(item.get("pending") or "")).get("mapping") == name:
                where.append("pending %s" % item["key"])
        for snapshot in sorted(s.get("name") for s in pvesh.get(base + "/snapshot") or []):
            if snapshot and snapshot != "current":
                lines = vm_line_users(pvesh.get("%s/snapshot/%s/config" % (base, snapshot)) or {}, name)
                where += ["snapshot %s: %s" % (snapshot, line) for line in lines]
        if where:
            out.append("VM %s (%s, on %s)" % (vmid, ", ".join(where), node))
    return out


def mapping_map(pvesh: Pvesh, name: str, params: dict) -> list[str] | None:
    """The mapping's entries as they are after this run: read from the cluster, with the entries of
    `entry_nodes` replaced by `entries` when the task is given them (a mapping written in the same run,
    or not yet in check mode). None: no such mapping."""
    try:
        texts = (pvesh.get("/cluster/mapping/pci/%s" % name) or {}).get("map") or []
    except PveshError as err:
        if "mapping '%s' not found" % name not in err.message:
            raise
        texts = None
    if params.get("entries") is None:
        return texts
    entries = params["entries"]
    nodes = params.get("entry_nodes") or sorted({e["node"] for e in entries})
    kept = [text for text in texts or [] if entry_node(text) not in nodes]
    return kept + ["node=%s,path=%s" % (e["node"], e["path"]) for e in entries]


def run(pvesh: Pvesh, showcmd, params: dict, check_mode: bool, record=None) -> dict:
    """`showcmd(vmid, node)` validates the VM where it can (the module: on this node only);
    record: a _mappings.RecordFile that notes each added or removed line right after the write."""
    vmid, name = params["vmid"], params["mapping"]
    if not CONFIGID_RE.match(name):
        raise Refused("mapping: %r is not a Proxmox mapping ID" % name)
    node = params["node"] or cluster_vms(pvesh).get(vmid)
    if node is None:
        if params["state"] == "absent":
            return {"changed": False, "node": None, "slot": None, "value": None, "removed": [], "added": False,
                    "applies": None, "gone": True, "diff": {"before": {}, "after": {}}}
        raise Refused("vmid: no VM %s in this cluster (pvesh get /cluster/resources --type vm)" % vmid)
    if params.get("only_here") and node != params["this_node"]:
        return {"changed": False, "node": node, "slot": None, "value": None, "removed": [], "added": False,
                "applies": None, "elsewhere": True, "diff": {"before": {}, "after": {}}}
    path = "/nodes/%s/qemu/%s/config" % (node, vmid)
    try:
        config = pvesh.get(path)
    except PveshError as err:
        raise Refused("vmid: VM %s on node %s: %s" % (vmid, node, err.message)) from None
    alternatives, others = None, {}
    if params["state"] == "present":
        texts = mapping_map(pvesh, name, params)
        if texts is None:
            raise Refused("mapping: there is no mapping %s in this cluster" % name)
        alternatives = mapping_alternatives(texts, node)
        if not alternatives:
            covered = sorted(entry_nodes(texts))
            raise Refused("mapping: VM %s is on node %s, and mapping %s has no entry for it (entries for: %s) - "
                          "the VM would not start there" % (vmid, node, name, ", ".join(covered) or "none"))
        for other in sorted({parse(v).get("mapping") for k, v in config.items() if SLOT_RE.match(k)} - {None, name}):
            other_map = mapping_map(pvesh, other, {}) or []
            others[other] = mapping_alternatives(other_map, node)
    slot, value, delete = plan(config, params, alternatives, others)
    before = {k: v for k, v in config.items() if SLOT_RE.match(k)}
    after = dict(before)
    for key in delete:
        after.pop(key)
    if slot:
        after[slot] = value
    had = bool(vm_line_users(config, name))
    result = {"changed": before != after, "node": node,
              "slot": slot or (vm_line_users(after, name) or [None])[0],
              "value": value, "removed": delete, "diff": {"before": before, "after": after},
              "applies": "at the next start of the VM" if before != after else None,
              "added": params["state"] == "present" and not had}
    if params["state"] == "present" and before != after:
        # A VM that does not start as it is would fail after the write too: refused first, in check mode alike.
        checked = validate(showcmd, vmid, node)
        if checked.get("error"):
            raise Refused("vmid: VM %s does not start as it is, so its line is not written - %s"
                          % (vmid, checked["error"]))
    if check_mode:
        if params["state"] == "present" and before == after:
            result.update(validate(showcmd, vmid, node))  # nothing to write: what is there is checked now
        return result
    if before != after:
        options = ["--digest", config["digest"]]
        if slot:
            options += ["--%s" % slot, value]
        if delete:
            options += ["--delete", ",".join(delete)]
        pvesh.set(path, options)
        if record is not None and (result["added"] or delete):
            record.save(noted_attachment(record.record, vmid, name, params["state"] == "present"))
    if params["state"] == "present":
        checked = validate(showcmd, vmid, node)
        result.update(checked)
        if checked.get("error") and before != after:
            undo = ["--%s" % slot, before[slot]] if slot in before else ["--delete", slot]
            pvesh.set(path, undo)
            if record is not None and result["added"]:
                record.save(noted_attachment(record.record, vmid, name, False))
            result["error"] += " (the line was taken out again)"
    return result


def validate(showcmd, vmid: int, node: str) -> dict:
    """Proxmox's own resolution of the VM's devices (qm showcmd), where it can run."""
    ok, message = showcmd(vmid, node)
    if ok is False:
        return {"showcmd": None, "error": "qm showcmd %s refuses the VM: %s" % (vmid, message)}
    return {"showcmd": message}
