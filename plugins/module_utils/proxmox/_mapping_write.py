# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What vfio.proxmox.pci_mapping does: read the mapping, compare, write once, check, undo on error.

Everything that can be refused is refused before the write: the mapping ID, each entry's
format and description, duplicate node+path, nodes outside the cluster, and entries for this
node whose IDs or IOMMU group do not match its hardware. A write decides the entries of the
task's `nodes` only; every other node's entries are kept as Proxmox holds them. After a write
Proxmox's own check (`check-node`, pve-manager PVE/API2/Cluster/Mapping/PCI.pm) runs for the
nodes written; an error there undoes the write, so a run leaves the old mapping or a valid new
one. Each write is noted in the record right after it succeeds; `state=undone` reads the record
and undoes what it names. A mapping a VM uses is never deleted.
"""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox import _mapping_entry, _mapping_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._configid import CONFIGID_RE
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._vm_hostpci import vms_using

API = "/cluster/mapping/pci"
FLAGS = ("mdev", "live-migration-capable")


class Refused(Exception):
    """The run stops before any write; the message names the option and the value."""


ENTRY_KEYS = ("node", "path", "id", "subsystem_id", "subsystem-id", "iommugroup", "description")


def desired_entries(params: dict) -> list[dict]:
    """The `entries` option in Proxmox's key names, or Refused naming the entry and the key."""
    out = []
    for index, item in enumerate(params["entries"] or []):
        unknown = sorted(set(item) - set(ENTRY_KEYS))
        if unknown:
            raise Refused("entries[%d]: unknown key %s (known: %s)"
                          % (index, ", ".join(unknown), ", ".join(ENTRY_KEYS)))
        if item.get("subsystem_id") is not None and item.get("subsystem-id") is not None:
            raise Refused("entries[%d]: subsystem_id and subsystem-id are one key - give one" % index)
        subsystem = item.get("subsystem_id") if item.get("subsystem_id") is not None else item.get("subsystem-id")
        entry = {"node": item.get("node"), "path": item.get("path"), "id": item.get("id"), "subsystem-id": subsystem,
                 "iommugroup": item.get("iommugroup"), "description": item.get("description")}
        out.append({k: (v if k == "iommugroup" else str(v)) for k, v in entry.items() if v is not None})
    return out


def canonical(text: str) -> str:
    """A map entry as compared: parsed and formatted; one we cannot parse stays as it is."""
    try:
        return _mapping_entry.format_entry(_mapping_entry.parse_entry(text))
    except _mapping_entry.MappingError:
        return text


def flag(mapping: dict, key: str) -> bool:
    return str(mapping.get(key) or 0).lower() in ("1", "on", "yes", "true")


def view(mapping: dict | None) -> dict | None:
    """A mapping as compared and shown in the diff: parsed, canonical, order-free."""
    if mapping is None:
        return None
    return dict({key: flag(mapping, key) for key in FLAGS}, description=mapping.get("description"),
                map=sorted(canonical(text) for text in mapping.get("map") or []))


def raw(mapping: dict) -> dict:
    """A mapping as Proxmox holds it, to put back exactly: map texts in their order, flags, description."""
    return {"map": list(mapping.get("map") or []), "description": mapping.get("description"),
            **{key: int(flag(mapping, key)) for key in FLAGS}}


def options(state: dict, previous: dict | None) -> list:
    """pvesh options that turn `previous` (None: a new mapping) into `state`; unchanged flags and
    description are not sent, so a value Proxmox holds in its own encoding is never written back."""
    argv = []
    for text in state["map"]:
        argv += ["--map", text]
    for key in FLAGS:
        if previous is None or bool(previous.get(key)) != bool(state[key]):
            argv += ["--%s" % key, str(int(bool(state[key])))]
    if state["description"] is not None:
        if previous is None or previous.get("description") != state["description"]:
            argv += ["--description", state["description"]]
    elif previous is not None and previous.get("description") is not None:
        argv += ["--delete", "description"]
    return argv


def node_hardware(pvesh: Pvesh, node: str) -> dict:
    """pci_facts-shaped devices of this node, from Proxmox's own view (`hardware/pci`, no class hidden)."""
    listed = pvesh.get("/nodes/%s/hardware/pci" % node, ["--pci-class-blacklist", ""]) or []
    return {dev["id"]: _mapping_entry.from_proxmox(dev) for dev in listed}


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
            entry = _mapping_entry.parse_entry(text)
        except _mapping_entry.MappingError:
            continue
        have[(entry.get("node"), entry.get("path"))] = entry
    out = []
    for entry in entries:
        old = have.get((entry["node"], entry["path"]))
        if old is None:
            continue
        for key in _mapping_entry.HARDWARE_KEYS:
            # A field the old entry lacks is a fix (Proxmox demands it), not a change of hardware.
            if old.get(key) is not None and same_value(key, old[key], entry.get(key)) is False:
                out.append("node %s path %s: %s was %s, is %s" % (entry["node"], entry["path"], key, old.get(key),
                                                                  entry.get(key)))
    return out


def same_value(key: str, old, new) -> bool:
    """A hardware field by meaning: IDs without case, the IOMMU group as a number (`012` is group 12)."""
    if key == "iommugroup":
        try:
            return int(old) == int(new)
        except (TypeError, ValueError):
            return False
    return str(old).lower() == str(new).lower()


def read(pvesh: Pvesh, name: str) -> dict | None:
    try:
        return pvesh.get("%s/%s" % (API, name))
    except PveshError as err:
        if "mapping '%s' not found" % name in err.message:
            return None
        raise  # anything else: we cannot tell what is there, so nothing is written


def owned_nodes(params: dict, entries: list[dict]) -> list[str]:
    """The nodes whose entries this task decides: `nodes`, or the nodes the entries name."""
    named = sorted({entry["node"] for entry in entries})
    if params.get("nodes") is None:
        return named
    outside = [node for node in named if node not in params["nodes"]]
    if outside:
        raise Refused("entries: node %s is not in nodes (%s): an entry is written only for a node this task "
                      "decides" % (", ".join(outside), ", ".join(params["nodes"]) or "none"))
    return sorted(set(params["nodes"]))


def plan_present(pvesh: Pvesh, params: dict, current: dict | None, cluster_nodes: list[str]) -> tuple[list, dict]:
    """(the nodes decided, the mapping as it must be after the run) - or Refused."""
    name = params["name"]
    try:
        entries = _mapping_entry.validate(name, desired_entries(params), cluster_nodes)
    except _mapping_entry.MappingError as err:
        raise Refused("name/entries: %s" % err) from None
    problem = _mapping_entry.description_problem(params.get("description"), in_entry=False)
    if problem:
        raise Refused("description: %r %s" % (params["description"][:60], problem))
    nodes = owned_nodes(params, entries)
    if not nodes:
        raise Refused("entries: a mapping needs at least one entry (state=absent removes it)")
    # Each node's entries against that node's hardware as Proxmox reads it (pvesh proxies hardware/pci to the node),
    # so a refusal comes before the write, in check mode too.
    for node in sorted({e["node"] for e in entries}):
        hardware = node_hardware(pvesh, node)
        problems = [p for e in entries if e["node"] == node
                    for p in _mapping_entry.hardware_problems(e, hardware, bool(params["mdev"]))]
        if problems:
            raise Refused("entries for node %s do not match its hardware: %s" % (node, "; ".join(problems)))
    if current is not None and not params.get("allow_hardware_change"):
        changed = hardware_changes(current, entries)
        if changed:
            raise Refused("the hardware changed since the mapping was written - %s; check the device, then set "
                          "allow_hardware_change: true to map what is there now" % "; ".join(changed))
    new_map = _mapping_entry.merged((current or {}).get("map") or [], entries, nodes)
    if not new_map:
        raise Refused("entries: the mapping would have no entry left (nodes %s decided with no entries); "
                      "state=absent removes it" % ", ".join(nodes))
    before = view(current) or {}
    after = {"map": new_map, "description": params["description"]}
    if after["description"] is None:
        after["description"] = before.get("description")  # not given: left as it is
    for key, param in (("mdev", "mdev"), ("live-migration-capable", "live_migration_capable")):
        after[key] = bool(params[param]) if params[param] is not None else bool(before.get(key))
    return nodes, after


def compared(state: dict | None) -> dict | None:
    return None if state is None else dict(state, map=sorted(canonical(text) for text in state["map"]))


def write(pvesh: Pvesh, name: str, action: str, after: dict, current: dict | None) -> None:
    if action == "create":
        pvesh.create(API, ["--id", name, *options(after, None)])
    else:
        pvesh.set("%s/%s" % (API, name), [*options(after, raw(current)), "--digest", current["digest"]])


def present(pvesh: Pvesh, params: dict, check_mode: bool, record: _mapping_plan.RecordFile) -> dict:
    name = params["name"]
    cluster_nodes = [n["node"] for n in pvesh.get("/nodes") or []]
    current = read(pvesh, name)
    nodes, after = plan_present(pvesh, params, current, cluster_nodes)
    before = view(current)
    action = "create" if current is None else "update" if compared(after) != before else None
    kept = [text for text in after["map"] if _mapping_entry.entry_node(text) not in nodes]
    result = {"changed": action is not None, "action": action, "nodes": nodes, "kept_entries": kept,
              "diff": {"before": before, "after": compared(after)}, "mapping": compared(after), "checks": {}}
    if check_mode and action is not None:
        return result  # a mapping that needs no change is checked in check mode too
    noted = record.record
    if action is not None:
        write(pvesh, name, action, after, current)
        record.save(_mapping_plan.noted_write(noted, name, action, raw(current) if current else None, nodes))
    check_nodes = params["check_nodes"] if params["check_nodes"] is not None else nodes
    result["checks"] = check(pvesh, name, [n for n in check_nodes if n in cluster_nodes or n == params["node"]])
    errors = errors_in(result["checks"])
    if errors:
        undone = None
        if action == "create":
            pvesh.delete("%s/%s" % (API, name))
            undone = "created mapping deleted again"
        elif action == "update":
            written = read(pvesh, name)
            pvesh.set("%s/%s" % (API, name), [*options(raw(current), raw(written)), "--digest", written["digest"]])
            undone = "previous mapping restored"
        if action is not None:
            record.save(noted)
        result["undone"] = undone
        result["errors"] = errors
    return result


def delete_unless_used(pvesh: Pvesh, name: str, check_mode: bool) -> dict:
    """Delete the mapping - unless a VM of the cluster uses it: it then stays, and the result names the VMs."""
    users = vms_using(pvesh, name)
    if users:
        return {"changed": False, "action": None, "used_by": users,
                "warning": "mapping %s is kept: %s use%s it (take the lines out first)"
                % (name, ", ".join(users), "s" if len(users) == 1 else "")}
    if not check_mode:
        pvesh.delete("%s/%s" % (API, name))
    return {"changed": True, "action": "delete", "used_by": []}


def restore(pvesh: Pvesh, name: str, current: dict, change: dict, check_mode: bool) -> dict:
    """Put back a mapping this collection changed: each recorded node's entries as they were just before the first
    write that decided that node, every other node's entries as they are now, flags and description as they were.
    When that adds up to the former mapping, it is put back exactly, entry order included. Proxmox's check then
    runs for the recorded nodes: a former state the hardware no longer matches is said, not hidden."""
    before, nodes = change["before"], change.get("nodes") or []
    held = change.get("node_entries") or {
        node: [t for t in before["map"] if _mapping_entry.entry_node(t) == node] for node in nodes}
    new_map = [t for t in current.get("map") or [] if _mapping_entry.entry_node(t) not in nodes]
    new_map += [t for node in nodes for t in held.get(node) or []]
    if sorted(new_map) == sorted(before["map"]):
        new_map = list(before["map"])
    if not new_map:
        return delete_unless_used(pvesh, name, check_mode)
    after = dict(before, map=new_map)
    result = {"changed": False, "action": None, "diff": {"before": view(current), "after": view(after)}}
    if view(after) != view(current) or current.get("map") != new_map:
        result.update(changed=True, action="restore")
        if not check_mode:
            pvesh.set("%s/%s" % (API, name), [*options(after, raw(current)), "--digest", current["digest"]])
    return result


def undo_created(pvesh: Pvesh, name: str, current: dict, decided: list[str] | None, check_mode: bool) -> dict:
    """A mapping this collection created: deleted - or, when nodes it never decided have entries now (added in
    the GUI since), only the entries of the nodes it decided are taken out. A mapping a VM uses stays."""
    others = [t for t in current.get("map") or []
              if decided is not None and _mapping_entry.entry_node(t) not in decided]
    if not others:
        return delete_unless_used(pvesh, name, check_mode)
    users = vms_using(pvesh, name)
    if users:
        return delete_unless_used(pvesh, name, check_mode)
    after = dict(raw(current), map=others)
    if not check_mode:
        pvesh.set("%s/%s" % (API, name), [*options(after, raw(current)), "--digest", current["digest"]])
    return {"changed": True, "action": "update", "used_by": [], "diff": {"before": view(current), "after": view(after)},
            "kept_entries": others}


def run(pvesh: Pvesh, params: dict, check_mode: bool, record: _mapping_plan.RecordFile | None = None) -> dict:
    name, state = params["name"], params["state"]
    record = record or _mapping_plan.RecordFile(None, check_mode)
    if not CONFIGID_RE.match(name or ""):
        raise Refused("name: %r is not a Proxmox mapping ID" % name)
    if state == "present":
        return present(pvesh, params, check_mode, record)
    current = read(pvesh, name)
    noted = record.record
    if state == "undone" and name not in noted["mappings"] and name not in noted["changed"]:
        return {"changed": False, "action": None, "note": "the record names no change to mapping %s" % name}
    if current is None:
        result = {"changed": False, "action": None}
    elif state == "undone" and name in noted["changed"]:
        result = restore(pvesh, name, current, noted["changed"][name], check_mode)
    elif state == "undone":
        result = undo_created(pvesh, name, current, (noted.get("decided") or {}).get(name), check_mode)
    else:
        result = delete_unless_used(pvesh, name, check_mode)
    if not result.get("used_by"):
        record.save(_mapping_plan.noted_undo(noted, name))
    result.setdefault("diff", {"before": view(current), "after": None if result["action"] else view(current)})
    result.update(checks={}, mapping=result["diff"]["after"])
    if state == "undone" and result["action"] in ("restore", "update") and not check_mode:
        members = [n["node"] for n in pvesh.get("/nodes") or []]
        nodes = noted["changed"].get(name, {}).get("nodes") or (noted.get("decided") or {}).get(name) or []
        result["checks"] = check(pvesh, name, [n for n in nodes if n in members])
        errors = errors_in(result["checks"])
        if errors:
            result["warning"] = ("mapping %s is back as it was, and Proxmox's check refuses it now - %s: a VM using it "
                                 "will not start there until the mapping matches the hardware"
                                 % (name, "; ".join(errors)))
    return result
