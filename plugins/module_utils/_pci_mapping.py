# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What vfio.proxmox.pci_mapping does: read the mapping, compare, write once, check, undo on error.

Everything that can be refused is refused before the write: the mapping ID, each entry's
format, duplicate node+path, nodes outside the cluster, and entries for this node whose
IDs or IOMMU group do not match its hardware. After a write Proxmox's own check
(`check-node`, pve-manager PVE/API2/Cluster/Mapping/PCI.pm) runs for every node of the
mapping; an error there undoes the write, so a run leaves the old mapping or a valid new one.
"""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils import _mapping
from ansible_collections.vfio.proxmox.plugins.module_utils._pvesh import Pvesh, PveshError

API = "/cluster/mapping/pci"


class Refused(Exception):
    """The run stops before any write; the message names the option and the value."""


def desired_entries(params: dict) -> list[dict]:
    out = []
    for item in params["entries"] or []:
        entry = {"node": item.get("node"), "path": item.get("path"), "id": item.get("id"),
                 "subsystem-id": item.get("subsystem_id"), "iommugroup": item.get("iommugroup"),
                 "description": item.get("description")}
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


def view(mapping: dict | None) -> dict | None:
    """A mapping as compared and shown in the diff: parsed, canonical, order-free."""
    if mapping is None:
        return None
    return {
        "description": mapping.get("description"),
        "mdev": bool(int(mapping.get("mdev") or 0)),
        "live-migration-capable": bool(int(mapping.get("live-migration-capable") or 0)),
        "map": sorted(_mapping.format_entry(_mapping.parse_entry(text)) for text in mapping.get("map") or []),
    }


def options(state: dict, previous: dict | None) -> list:
    argv = []
    for text in state["map"]:
        argv += ["--map", text]
    argv += ["--mdev", str(int(state["mdev"])), "--live-migration-capable", str(int(state["live-migration-capable"]))]
    if state["description"] is not None:
        argv += ["--description", state["description"]]
    elif previous is not None and previous.get("description") is not None:
        argv += ["--delete", "description"]
    return argv


def node_hardware(pvesh: Pvesh, node: str) -> dict:
    """pci_facts-shaped devices of this node, from Proxmox's own view (`hardware/pci`, no class hidden)."""
    listed = pvesh.get("/nodes/%s/hardware/pci" % node, ["--pci-class-blacklist", ""]) or []
    return {dev["id"]: _mapping.from_proxmox(dev) for dev in listed}


def check(pvesh: Pvesh, name: str, nodes: list[str]) -> dict:
    """Proxmox's check-node results for this mapping, per node."""
    results = {}
    for node in nodes:
        listed = [m for m in pvesh.get(API, ["--check-node", node]) or [] if m.get("id") == name]
        results[node] = listed[0].get("checks", []) if listed else [
            {"severity": "error", "message": "mapping %s is not listed on node %s" % (name, node)}]
    return results


def errors_in(checks: dict) -> list[str]:
    return ["%s: %s" % (node, c.get("message", "").strip()) for node, found in sorted(checks.items())
            for c in found if c.get("severity") == "error"]


def hardware_changes(current: dict, entries: list[dict]) -> list[str]:
    """Entries whose node and path stay but whose IDs or IOMMU group differ from the mapping's."""
    have = {}
    for text in current.get("map") or []:
        try:
            entry = _mapping.parse_entry(text)
        except _mapping.MappingError:
            continue
        have[(entry.get("node"), entry.get("path"))] = entry
    out = []
    for entry in entries:
        old = have.get((entry["node"], entry["path"]))
        if old is None:
            continue
        for key in _mapping.HARDWARE_KEYS:
            # A field the old entry lacks is a fix (Proxmox demands it), not a change of hardware.
            if old.get(key) is not None and str(old[key]).lower() != str(entry.get(key)).lower():
                out.append("node %s path %s: %s was %s, is %s" % (entry["node"], entry["path"], key, old.get(key),
                                                                  entry.get(key)))
    return out


def read(pvesh: Pvesh, name: str) -> dict | None:
    try:
        return pvesh.get("%s/%s" % (API, name))
    except PveshError as err:
        if "mapping '%s' not found" % name in err.message:
            return None
        raise  # anything else: we cannot tell what is there, so nothing is written


def run(pvesh: Pvesh, params: dict, check_mode: bool) -> dict:
    name, state = params["name"], params["state"]
    nodes = [n["node"] for n in pvesh.get("/nodes") or []]
    try:
        entries = _mapping.validate(name, desired_entries(params), nodes) if state == "present" else []
    except _mapping.MappingError as err:
        raise Refused("name/entries: %s" % err) from None
    if state == "present" and not entries:
        raise Refused("entries: a mapping needs at least one entry (state=absent removes it)")
    local = [e for e in entries if e["node"] == params["node"]]
    if local:
        hardware = node_hardware(pvesh, params["node"])
        problems = [p for e in local for p in _mapping.hardware_problems(e, hardware, params["mdev"])]
        if problems:
            raise Refused("entries for node %s do not match its hardware: %s" % (params["node"], "; ".join(problems)))

    current = read(pvesh, name)
    if current is not None and not params.get("allow_hardware_change"):
        changed = hardware_changes(current, entries)
        if changed:
            raise Refused("the hardware changed since the mapping was written - %s; check the device, then set "
                          "allow_hardware_change: true to map what is there now" % "; ".join(changed))
    before = view(current)
    after = None if state == "absent" else {
        "description": params["description"], "mdev": params["mdev"],
        "live-migration-capable": params["live_migration_capable"],
        "map": sorted(_mapping.format_entry(e) for e in entries)}
    if after is not None and params["description"] is None and before is not None:
        after["description"] = before["description"]  # not given: left as it is
    action = None
    if state == "absent" and current is not None:
        action = "delete"
    elif state == "present" and current is None:
        action = "create"
    elif state == "present" and before != after:
        action = "update"

    result = {"changed": action is not None, "action": action, "diff": {"before": before, "after": after},
              "mapping": after, "checks": {}}
    if state == "absent" or (check_mode and action is not None):
        if action == "delete" and not check_mode:
            pvesh.delete("%s/%s" % (API, name))
        return result
    # An unchanged mapping is checked in check mode too: a device that changed shows before any VM start.
    if action == "create":
        pvesh.create(API, ["--id", name, *options(after, None)])
    elif action == "update":
        pvesh.set("%s/%s" % (API, name), [*options(after, before), "--digest", current["digest"]])

    check_nodes = params["check_nodes"] if params["check_nodes"] is not None else sorted({e["node"] for e in entries})
    result["checks"] = check(pvesh, name, check_nodes)
    errors = errors_in(result["checks"])
    if errors:
        undone = None
        if action == "create":
            pvesh.delete("%s/%s" % (API, name))
            undone = "created mapping deleted again"
        elif action == "update":
            pvesh.set("%s/%s" % (API, name), options(before, after))
            undone = "previous mapping restored"
        result["undone"] = undone
        result["errors"] = errors
    return result
