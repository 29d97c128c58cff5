# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a reboot does to the node's guests: read from Proxmox's own API on the node, decided by the policy.

Read (pve-manager, qemu-server, pve-container, pve-ha-manager API paths, through `pvesh` on the node):
`/nodes/NODE/qemu` and `/nodes/NODE/lxc` (vmid, name, status), `/cluster/ha/resources` (sid `vm:100` or
`ct:101`, state). Policies:
- `refuse` (the default): a running guest stops the reboot, named.
- `shutdown`: the running guests are shut down by Proxmox's own `stopall` for exactly those IDs (their
  startup order reversed, their own shutdown timeouts: pve-manager PVE/API2/Nodes.pm stopall and
  get_start_stop_list) and started again after the reboot by `startall --force` for the same IDs (in their
  startup order). HA-managed guests are refused under it: HA decides where they run.
- `migrate`: HA-managed running guests are moved by HA itself - the node enters HA maintenance
  (pve-ha-manager Manager.pm: a node in maintenance has its services migrated away and back when it
  leaves). The other running guests are migrated by this collection: VMs online, containers in restart
  mode (pve-container LXC/Migrate.pm: a running container can only be migrated in restart mode), each to an
  online node Proxmox allows (qemu-server API2/Qemu.pm migrate_vm_precondition: allowed_nodes), and back after
  the reboot. A guest that cannot move is refused, named with why: a local device (hostpciN, usbN, ... -
  qemu-server QemuMigrate/Helpers.pm check_local_resources: a mapped device only when its mapping is
  live-migration-capable), a local disk or CD-ROM (moving it would copy the disk), a container's local bind or
  device mount point (LXC/Migrate.pm: "cannot migrate local ... mount point"), no online node to go to.
A node without `pvesh` is no Proxmox VE node: it has no guests to consider, and the result says so.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import PveshError

POLICIES = ("refuse", "shutdown", "migrate")
# pve-ha-manager: a resource in state `ignored` is not managed by HA (HA/Resources.pm, Manager.pm).
UNMANAGED_HA_STATES = ("ignored",)


class GuestsError(RuntimeError):
    """The guests could not be read: the reboot is refused (fail closed)."""


def read(pvesh, node: str) -> list[dict]:
    """The node's guests with their HA state, sorted by ID."""
    ha = {}
    for resource in pvesh.get("/cluster/ha/resources") or []:
        _kind, _sep, vmid = str(resource.get("sid") or "").partition(":")
        if vmid.isdigit():
            ha[int(vmid)] = resource.get("state") or "started"
    guests = []
    for kind in ("qemu", "lxc"):
        for guest in pvesh.get("/nodes/%s/%s" % (node, kind)) or []:
            vmid = int(guest["vmid"])
            guests.append({"vmid": vmid, "type": kind, "name": guest.get("name") or "", "status": guest.get("status"),
                           "ha": ha.get(vmid)})
    return sorted(guests, key=lambda g: g["vmid"])


def ha_managed(guest: dict) -> bool:
    return guest["ha"] is not None and guest["ha"] not in UNMANAGED_HA_STATES


def read_cluster(pvesh, node: str) -> dict:
    """{online: [other online nodes], load: {node: running guests}} from /cluster/status and /cluster/resources.
    A node HA counts in maintenance (another reboot is coming there) is no place to send guests."""
    status = (pvesh.get("/cluster/ha/status/manager_status") or {}).get("manager_status") or {}
    away = {n for n, state in (status.get("node_status") or {}).items() if state != "online"}
    online = sorted(str(e["name"]) for e in pvesh.get("/cluster/status") or []
                    if e.get("type") == "node" and int(e.get("online") or 0) and e.get("name") != node
                    and e.get("name") not in away)
    load = {name: 0 for name in online}
    for resource in pvesh.get("/cluster/resources", ["--type", "vm"]) or []:
        if resource.get("status") == "running" and resource.get("node") in load:
            load[resource["node"]] += 1
    return {"online": online, "load": load}


# pve-storage: the plugins whose storage every node reaches (their `shared` property is fixed on) - rbd, cephfs,
# nfs, cifs, glusterfs, iscsi, iscsidirect, pbs and zfs over iSCSI; others are shared only when marked so.
SHARED_TYPES = ("rbd", "cephfs", "nfs", "cifs", "glusterfs", "iscsi", "iscsidirect", "pbs", "zfs")


def read_storage(pvesh) -> dict:
    """{storage: {shared: bool, nodes: [node] or None}} from /storage (pve-storage API2/Storage/Config.pm)."""
    table = {}
    for entry in pvesh.get("/storage") or []:
        nodes = [n for n in str(entry.get("nodes") or "").split(",") if n]
        table[str(entry["storage"])] = {"shared": bool(int(entry.get("shared") or 0)) or entry.get("type") in
                                        SHARED_TYPES, "nodes": nodes or None}
    return table


def container_blockers(config: dict, storage: dict) -> tuple[list[str], set[str]]:
    """(why a running container cannot move, the storages it needs). pve-container LXC/Migrate.pm prepare: a
    bind or device mount point without shared=1 cannot move, a local volume is copied while the container is
    down (refused here, as a VM's local disk is); its devN passes a host device no other node has; a lock."""
    blockers, needs = [], set()
    if config.get("lock"):
        blockers.append("lock %s" % config["lock"])
    for key in sorted(config):
        if re.match(r"^dev\d+$", key):
            blockers.append("passed-through device %s (%s)" % (key, str(config[key]).split(",", maxsplit=1)[0]))
        if not re.match(r"^(rootfs|mp\d+|unused\d+)$", key):
            continue
        fields = str(config[key]).split(",")
        volume = fields[0].partition("=")[2] if fields[0].startswith("volume=") else fields[0]
        shared = any(f.replace(" ", "") in ("shared=1", "shared=yes", "shared=on", "shared=true") for f in fields)
        if volume.startswith("/"):
            if not shared:
                blockers.append("local mount point %s (%s)" % (key, volume))
            continue
        store = volume.partition(":")[0]
        needs.add(store)
        if store not in storage:
            blockers.append("%s on storage %s, which /storage does not list" % (key, store))
        elif not storage[store]["shared"]:
            blockers.append("local disk %s" % volume)
    return blockers, needs


def optional(pvesh, path: str) -> list:
    """An API path that only some Proxmox VE versions have: its list, or [] where pvesh has no handler for it
    (pve-manager PVE/CLI/pvesh.pm: "no 'get' handler for PATH"). Any other error is an error."""
    try:
        return pvesh.get(path) or []
    except PveshError as err:
        if "handler for" in err.message:
            return []
        raise


def read_ha_limits(pvesh) -> dict:
    """{sid: [node]} - the nodes HA may run a resource on, where it is restricted: a strict node-affinity rule
    (Proxmox VE 9: /cluster/ha/rules, pve-ha-manager Rules/NodeAffinity.pm) or a restricted group (Proxmox VE 8:
    /cluster/ha/groups, HA/Groups.pm). Node lists are `node[:priority],...`."""
    limits = {}
    for rule in optional(pvesh, "/cluster/ha/rules"):
        if rule.get("type") == "node-affinity" and int(rule.get("strict") or 0) and not int(rule.get("disable") or 0):
            for sid in str(rule.get("resources") or "").split(","):
                limits[sid] = [n.split(":")[0] for n in str(rule.get("nodes") or "").split(",") if n]
    groups = {g.get("group"): g for g in optional(pvesh, "/cluster/ha/groups")}
    for resource in pvesh.get("/cluster/ha/resources") or []:
        group = groups.get(resource.get("group"))
        if group and int(group.get("restricted") or 0):
            limits.setdefault(str(resource["sid"]), [n.split(":")[0] for n in str(group.get("nodes") or "").split(",")
                                                     if n])
    return limits


def read_moves(pvesh, node: str, guests: list[dict]) -> dict:
    """For each running guest: {vmid: {blockers: [why], allowed: [node] or None, why_not: {node: why}}}. HA-managed
    VMs too: HA cannot move a VM that Proxmox's own migration check refuses either."""
    moves, storage, limits = {}, None, None
    for guest in guests:
        if guest["status"] != "running":
            continue
        if ha_managed(guest):
            limits = read_ha_limits(pvesh) if limits is None else limits
            sid = "%s:%d" % ("vm" if guest["type"] == "qemu" else "ct", guest["vmid"])
            moves[guest["vmid"]] = {"blockers": [], "allowed": None, "why_not": {}, "ha_nodes": limits.get(sid)}
        base = "/nodes/%s/%s/%d" % (node, guest["type"], guest["vmid"])
        if guest["type"] == "qemu":
            pre = pvesh.get(base + "/migrate") or {}
            blockers = ["local device %s" % r for r in pre.get("local_resources") or []]
            # qemu-server QemuMigrate.pm: TPM state and a cloud-init drive are generated - copied while it runs
            blockers += ["local %s %s" % ("CD-ROM" if d.get("cdrom") else "disk", d.get("volid"))
                         for d in pre.get("local_disks") or []
                         if not (d.get("is_unused") or d.get("is_tpmstate") or d.get("is_cloudinit")
                                 or re.search(r"vm-\d+-cloudinit", str(d.get("volid"))))]
            why_not = {str(n): ", ".join(sorted(
                "%s has no mapping entry there" % ", ".join(v) if k == "unavailable-resources" else
                "storage %s is not there" % ", ".join(v) if k == "unavailable_storages" else k for k, v in
                (why or {}).items())) for n, why in (pre.get("not_allowed_nodes") or {}).items()}
            moves[guest["vmid"]] = dict(moves.get(guest["vmid"]) or {}, blockers=blockers, why_not=why_not,
                                        allowed=[str(n) for n in pre.get("allowed_nodes") or []])
        elif not ha_managed(guest):
            storage = read_storage(pvesh) if storage is None else storage
            blockers, needs = container_blockers(pvesh.get(base + "/config") or {}, storage)
            nodes = [set(storage[s]["nodes"]) for s in needs if s in storage and storage[s]["nodes"]]
            allowed = sorted(set.intersection(*nodes)) if nodes else None
            why_not = {} if allowed is None else {
                "*": "its storage %s is enabled on %s only" % (", ".join(sorted(needs)), ", ".join(allowed))}
            moves[guest["vmid"]] = {"blockers": blockers, "allowed": allowed, "why_not": why_not}
    return moves


def label(guest: dict) -> str:
    return "%s %s%s" % ("VM" if guest["type"] == "qemu" else "CT", guest["vmid"],
                        " (%s)" % guest["name"] if guest["name"] else "")


def _target(guest: dict, move: dict, cluster: dict, wanted: str | None, load: dict) -> tuple[str | None, str]:
    """(target, why not) for one guest: the wanted node, else the allowed online node with the fewest guests."""
    allowed = [n for n in cluster["online"] if move["allowed"] is None or n in move["allowed"]]
    if wanted:
        if wanted in allowed:
            return wanted, ""
        return None, "passthrough_reboot_migrate_to: %s is not an online node Proxmox allows for it (allowed: %s)" % (
            wanted, ", ".join(allowed) or "none")
    if not allowed:
        why = "; ".join("%s: %s" % (n, w) for n, w in sorted((move.get("why_not") or {}).items())
                        if n == "*" or n in cluster["online"])
        return None, "Proxmox allows no online node for it (online: %s%s)" % (
            ", ".join(cluster["online"]) or "none", "; " + why if why else "")
    return min(allowed, key=lambda n: (load.get(n, 0), n)), ""


def _ha_can_move(guest: dict, moves: dict | None, cluster: dict | None, node: str) -> bool:
    """Whether HA has another online node it may run the guest on (no restriction: any other online node)."""
    limit = ((moves or {}).get(guest["vmid"]) or {}).get("ha_nodes")
    online = (cluster or {}).get("online") or []
    return bool(online) if limit is None else any(n in online and n != node for n in limit)


def decide(guests: list[dict], policy: str, node: str = "", moves: dict | None = None, cluster: dict | None = None,
           migrate_to: str | None = None, back: bool = True) -> dict:
    """{refused: [why], stop: [vmid], start: [vmid], migrate: [move], ha_maintenance: bool, report: [line per guest]}
    for a reboot of `node` under `policy`. A move: {vmid, type, name, node, target, mode (online|restart)}."""
    if policy not in POLICIES:
        raise GuestsError("passthrough_reboot_guests: %r is not one of %s" % (policy, ", ".join(POLICIES)))
    refused, stop, migrate, report = [], [], [], []
    ha_maintenance = False
    load = dict((cluster or {}).get("load") or {})
    for guest in guests:
        if guest["status"] != "running":
            report.append("%s is %s: nothing to do" % (label(guest), guest["status"]))
            continue
        if policy == "refuse":
            refused.append("%s is running" % label(guest))
            report.append("%s is running: the reboot is refused (passthrough_reboot_guests: refuse)" % label(guest))
        elif ha_managed(guest) and policy == "shutdown":
            refused.append("%s is managed by HA (state %s): HA, not a shutdown, decides where it runs"
                           % (label(guest), guest["ha"]))
            report.append("%s is HA-managed: the reboot is refused under passthrough_reboot_guests: shutdown"
                          % label(guest))
        elif policy == "shutdown":
            stop.append(guest["vmid"])
            report.append("%s is running: shut down before the reboot, started again after it" % label(guest))
        elif ha_managed(guest) and ((moves or {}).get(guest["vmid"]) or {}).get("blockers"):
            reason = ", ".join(moves[guest["vmid"]]["blockers"])
            refused.append("%s cannot be moved by HA either: it uses %s" % (label(guest), reason))
            report.append("%s is HA-managed and cannot move (%s): the reboot is refused" % (label(guest), reason))
        elif ha_managed(guest) and not _ha_can_move(guest, moves, cluster, node):
            limit = ((moves or {}).get(guest["vmid"]) or {}).get("ha_nodes")
            why = ("no other online node for HA to move it to" if limit is None else
                   "a strict HA node-affinity rule or a restricted HA group keeps it on %s, and none of them is "
                   "another online node" % (", ".join(limit) or "no node"))
            refused.append("%s cannot be moved by HA: %s" % (label(guest), why))
            report.append("%s is HA-managed and cannot be moved (%s): the reboot is refused" % (label(guest), why))
        elif ha_managed(guest):
            ha_maintenance = True
            report.append("%s is HA-managed: HA moves it away when %s enters HA maintenance, and back after"
                          % (label(guest), node))
        else:
            move = (moves or {}).get(guest["vmid"])
            if move is None:
                raise GuestsError("%s: its migration preconditions were not read" % label(guest))
            target, why = (None, "") if move["blockers"] else _target(guest, move, cluster or {"online": []},
                                                                      migrate_to, load)
            if move["blockers"] or target is None:
                reason = "it uses %s" % ", ".join(move["blockers"]) if move["blockers"] else why
                refused.append("%s cannot be migrated: %s" % (label(guest), reason))
                report.append("%s is running and cannot be migrated (%s): the reboot is refused"
                              % (label(guest), reason))
                continue
            load[target] = load.get(target, 0) + 1
            mode = "online" if guest["type"] == "qemu" else "restart"
            migrate.append({"vmid": guest["vmid"], "type": guest["type"], "name": guest["name"], "node": node,
                            "target": target, "mode": mode})
            report.append("%s is running: migrated to %s (%s) before the reboot%s"
                          % (label(guest), target, "online" if mode == "online" else "restart mode: stopped, moved, "
                             "started", ", back after it" if back else ", and stays there"))
    return {"refused": refused, "stop": stop, "start": list(stop), "migrate": migrate,
            "ha_maintenance": ha_maintenance, "report": report}
