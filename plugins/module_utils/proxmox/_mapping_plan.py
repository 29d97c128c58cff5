# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's mappings from the inventory, and the record of what the collection did.

Each node's passthrough plan names, per selected device, a `mapping` and maybe a `vm`
(passthrough_devices items). mapping_plan() gathers them across the play's hosts into one
desired mapping per name, an entry per node and device. The record (mappings.json on every
node) keeps what the collection created, the former state of each mapping it changed, and the
hostpci lines it added, so a rollback undoes exactly that: pci_mapping and vm_hostpci note each
write in it right after the write succeeds.
"""

from __future__ import annotations

import json
import os

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._write import write_text
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_entry import entry_node


class MappingsError(ValueError):
    pass


def mapping_plan(hosts: dict) -> list[dict]:
    """hosts: inventory host -> {"node": Proxmox node name, "devices": the plan's devices}.

    Returns [{"name", "entries": [...pci_mapping entries], "vms": [vmid, ...]}], sorted by name.
    """
    wanted: dict[str, dict] = {}
    for host in sorted(hosts):
        node, devices = hosts[host].get("node"), hosts[host].get("devices") or []
        for device in devices:
            name = device.get("mapping")
            if not name:
                continue
            if not node:
                raise MappingsError("%s: the node's Proxmox name is unknown (pci_facts vfio_host.node_name is "
                                    "empty), so its entry for mapping %s cannot be written" % (host, name))
            entry = device.get("proxmox_mapping")
            if not entry:
                raise MappingsError("%s: %s has no vendor:device ID to map (mapping %s)"
                                    % (host, device["address"], name))
            mapping = wanted.setdefault(name, {"name": name, "entries": [], "vms": [], "hosts": []})
            mapping["entries"].append({"node": node, "path": entry["path"], "id": entry["id"],
                                       "subsystem_id": entry.get("subsystem-id"),
                                       "iommugroup": entry.get("iommugroup")})
            if host not in mapping["hosts"]:
                mapping["hosts"].append(host)
            if device.get("vm") is not None and device["vm"] not in mapping["vms"]:
                mapping["vms"].append(device["vm"])
    # Every node of the play decides its entries of every mapping it names - or names no more.
    play_nodes = sorted({hosts[host]["node"] for host in hosts if hosts[host].get("node")})
    for mapping in wanted.values():
        mapping["vms"].sort()
        mapping["nodes"] = play_nodes
    return [wanted[name] for name in sorted(wanted)]


def attach_problems(per_host: list[dict]) -> list[str]:
    """Why VMs were not given their mapping: each failed vm_hostpci item (every node of the play runs the loop
    with only_here), and each VM that every node left to another - its node is not in the play."""
    problems, handled, where = [], set(), {}
    for registered in per_host:
        for result in (registered or {}).get("results") or []:
            item = result.get("item") or {}
            key = (item.get("vmid"), item.get("mapping"))
            if result.get("failed"):
                problems.append(result.get("msg"))
                handled.add(key)
            elif result.get("elsewhere"):
                where[key] = result.get("node")
            elif not result.get("skipped"):
                handled.add(key)
    for (vmid, mapping), node in sorted(where.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if (vmid, mapping) not in handled:
            problems.append("VM %s is on node %s, which is not in this play: it was not given mapping %s (run the "
                            "playbook with that node too)" % (vmid, node, mapping))
    return problems


def attachments(plan: list[dict]) -> list[dict]:
    """One item per VM and mapping, with the entries and nodes the run writes (vm_hostpci checks with them)."""
    return [{"vmid": vmid, "mapping": m["name"], "entries": m["entries"], "nodes": m["nodes"]}
            for m in plan for vmid in m["vms"]]


def parse_record(text: str | None, where: str) -> dict:
    """A record's text (None or empty: nothing recorded) in its full shape.

    `mappings`: names this collection created; `changed`: name -> {"nodes": the nodes whose
    entries it decided, "before": the mapping as it was before the first change}; `attached`:
    the hostpci lines it added ({vmid, mapping}).
    """
    if not text or not text.strip():
        return {"mappings": [], "decided": {}, "changed": {}, "attached": []}
    try:
        record = json.loads(text)
    except ValueError:
        raise MappingsError("%s is not JSON - fix or remove it (it lists what the mappings playbook made)"
                            % where) from None
    if not isinstance(record, dict) or not _record_shape_ok(record):
        raise MappingsError("%s does not have the shape of a mappings record (mappings: [names], changed: {name: "
                            "{nodes, before: {map}}}, attached: [{vmid, mapping}]) - fix or remove it" % where)
    return {"mappings": sorted(set(record.get("mappings") or [])),
            "decided": dict(record.get("decided") or {}),
            "changed": dict(record.get("changed") or {}),
            "attached": sorted((dict(a) for a in record.get("attached") or []),
                               key=lambda a: (a["vmid"], a["mapping"]))}


def _record_shape_ok(record: dict) -> bool:
    mappings, changed = record.get("mappings") or [], record.get("changed") or {}
    attached, decided = record.get("attached") or [], record.get("decided") or {}
    return (isinstance(decided, dict) and all(isinstance(n, list) for n in decided.values())
            and isinstance(mappings, list) and all(isinstance(m, str) for m in mappings)
            and isinstance(changed, dict) and all(
                isinstance(c, dict) and isinstance(c.get("nodes", []), list) and isinstance(c.get("before"), dict)
                and isinstance(c["before"].get("map"), list) and isinstance(c.get("node_entries", {}), dict)
                for c in changed.values())
            and isinstance(attached, list) and all(
                isinstance(a, dict) and isinstance(a.get("vmid"), int) and isinstance(a.get("mapping"), str)
                for a in attached))


def record_text(record: dict) -> str:
    """The record file's text; empty when it names nothing (no file is kept then)."""
    # `decided` only ever describes names in `mappings`: without those it names nothing either.
    if not record.get("mappings") and not record.get("changed") and not record.get("attached"):
        return ""
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def union(records: list[dict]) -> dict:
    """Every node keeps the same record; where copies differ (a run stopped before it copied its
    record everywhere), nothing any of them names is forgotten. For a mapping changed twice in
    different copies, the oldest `before` cannot be told apart: the first copy that has one wins,
    and its node list is the union."""
    out = {"mappings": set(), "decided": {}, "changed": {}, "attached": set()}
    for record in records:
        out["mappings"].update(record.get("mappings") or [])
        for name, nodes in (record.get("decided") or {}).items():
            out["decided"][name] = sorted(set(out["decided"].get(name) or []) | set(nodes))
        for name, change in sorted((record.get("changed") or {}).items()):
            kept = out["changed"].setdefault(name, {"nodes": [], "before": change.get("before")})
            kept["nodes"] = sorted(set(kept["nodes"]) | set(change.get("nodes") or []))
            for node, texts in (change.get("node_entries") or {}).items():
                kept.setdefault("node_entries", {}).setdefault(node, texts)
        out["attached"].update((a["vmid"], a["mapping"]) for a in record.get("attached") or [])
    return {"mappings": sorted(out["mappings"]), "decided": out["decided"], "changed": out["changed"],
            "attached": [{"vmid": v, "mapping": m} for v, m in sorted(out["attached"])]}


def noted_write(record: dict, name: str, action: str, before: dict | None, nodes: list[str]) -> dict:
    """The record after pci_mapping created or updated `name`, deciding the entries of `nodes`.

    A created mapping keeps the nodes the collection decided (`decided`), so its undo leaves entries others added
    since. A mapping that existed keeps its first former state (`before`), and for each node the entries it had
    just before the first write that decided that node (`node_entries`) - what an undo puts back.
    """
    record = json.loads(json.dumps(record))
    decided = record.setdefault("decided", {})
    if action == "create" or name in record["mappings"]:
        if name not in record["mappings"]:
            record["mappings"] = sorted(record["mappings"] + [name])
        decided[name] = sorted(set(decided.get(name) or []) | set(nodes))
        record["changed"].pop(name, None)
    elif action == "update":
        change = record["changed"].setdefault(name, {"nodes": [], "before": before})
        change["nodes"] = sorted(set(change["nodes"]) | set(nodes))
        held = change.setdefault("node_entries", {})
        for node in nodes:
            held.setdefault(node, [t for t in (before or {}).get("map") or [] if entry_node(t) == node])
    return record


def noted_undo(record: dict, name: str) -> dict:
    """The record after the mapping `name` was deleted or put back as it was."""
    record = json.loads(json.dumps(record))
    record["mappings"] = [m for m in record["mappings"] if m != name]
    record["changed"].pop(name, None)
    record.get("decided", {}).pop(name, None)
    return record


def noted_attachment(record: dict, vmid: int, mapping: str, added: bool) -> dict:
    """The record after a hostpci line for `mapping` was added to VM `vmid` (added) or removed."""
    record = json.loads(json.dumps(record))
    pairs = {(a["vmid"], a["mapping"]) for a in record["attached"]}
    pairs = pairs | {(vmid, mapping)} if added else pairs - {(vmid, mapping)}
    record["attached"] = [{"vmid": v, "mapping": m} for v, m in sorted(pairs)]
    return record


class RecordFile:
    """The record on the node a module runs on, or no record (path None). Check mode writes nothing."""

    def __init__(self, path: str | None, check_mode: bool) -> None:
        self.path, self.check_mode = path, check_mode
        self.record = parse_record(None, "")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except FileNotFoundError:
                text = None
            self.record = parse_record(text, path)

    def save(self, record: dict) -> None:
        self.record = record
        if not self.path or self.check_mode:
            return
        text = record_text(record)
        if text:
            write_text(self.path, text, 0o600)
        elif os.path.lexists(self.path):
            os.unlink(self.path)  # nothing left to undo: no record
