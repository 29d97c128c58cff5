# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's mappings from the inventory, and the record of what the collection made.

Each node's passthrough plan names, per selected device, a `mapping` and maybe a `vm`
(passthrough_devices items). mapping_plan() gathers them across the play's hosts into one
desired mapping per name, an entry per node and device; record_after() keeps what this
collection created (mappings it made, hostpci lines it added), so a rollback removes that
and nothing else - a mapping that existed before is only ever updated, never deleted.
"""

from __future__ import annotations


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
    for mapping in wanted.values():
        mapping["vms"].sort()
    return [wanted[name] for name in sorted(wanted)]


def attachments(plan: list[dict]) -> list[dict]:
    return [{"vmid": vmid, "mapping": m["name"]} for m in plan for vmid in m["vms"]]


def record_after(records: list[dict], mapping_results: list[dict], attach_results: list[dict]) -> dict:
    """The record after a run: the union of the nodes' records, plus what this run created.

    records: the record as each node keeps it (every node of the play keeps the same one, so any
    node that is left can tell a rollback what to remove); mapping_results / attach_results: the
    registered loop results of pci_mapping / vm_hostpci.
    """
    mappings = {name for record in records for name in record.get("mappings") or []}
    attached = {(a["vmid"], a["mapping"]) for record in records for a in record.get("attached") or []}
    for result in mapping_results:
        if result.get("action") == "create":
            mappings.add(result["item"]["name"])
    for result in attach_results:
        if result.get("added"):
            attached.add((result["item"]["vmid"], result["item"]["mapping"]))
    return {"mappings": sorted(mappings),
            "attached": [{"vmid": v, "mapping": m} for v, m in sorted(attached)]}
