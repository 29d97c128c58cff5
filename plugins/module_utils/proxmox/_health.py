# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Proxmox VE cluster's health around a node's reboot: quorum, the nodes online, Ceph.

Read through `pvesh` on the node (pve-manager): `/cluster/status` (PVE/API2/Cluster.pm: an entry of type
`cluster` with `quorate`, one of type `node` per member with `online`), `/cluster/ceph/status`
(PVE/API2/Cluster/Ceph.pm status: `health.status`; it dies when Ceph is not installed or not initialized -
pveceph's check_ceph_inited - which here means "no Ceph") and `/cluster/ceph/flags` (`noout`).
Before a reboot a cluster that is not quorate, a reboot that would leave the other nodes without quorum
(`corosync-quorumtool -s`: total votes less this node's below the quorum), or a Ceph that is in HEALTH_ERR,
refuses it; after the reboot
the run waits until the cluster is quorate with every node that was online before and Ceph is back to the
health it had (HEALTH_OK stays OK; WARN may be WARN or OK). A Ceph health check that says data lacks a copy or
OSDs are down (PG_DEGRADED, OSD_DOWN, ...) refuses a reboot before it and is waited out after it, whatever the
overall status.
"""

from __future__ import annotations

import time

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import PveshError

HEALTH_RANK = {"HEALTH_OK": 0, "HEALTH_WARN": 1, "HEALTH_ERR": 2}
# Ceph's health checks (docs.ceph.com rados/operations/health-checks) that say data lacks a copy or OSDs are down:
# a node going down now may take the last copy of something away and block I/O. Another warning (a flag, a
# clock skew, an old crash) is no such risk.
REDUNDANCY_CHECKS = ("OSD_DOWN", "OSD_HOST_DOWN", "OSD_ROOT_DOWN", "PG_AVAILABILITY", "PG_DEGRADED", "PG_DAMAGED",
                     "OBJECT_UNFOUND", "PG_RECOVERY_FULL", "PG_BACKFILL_FULL")
NO_CEPH = ("not installed", "not initialized", "binary not installed")


def read(pvesh) -> dict:
    """{standalone, quorate, online: [names], offline: [names], ceph: None | {health, noout}}."""
    entries = pvesh.get("/cluster/status") or []
    cluster = next((e for e in entries if e.get("type") == "cluster"), None)
    nodes = [e for e in entries if e.get("type") == "node"]
    status = {"standalone": cluster is None, "quorate": True if cluster is None else bool(cluster.get("quorate")),
              "online": sorted(n["name"] for n in nodes if n.get("online")),
              "offline": sorted(n["name"] for n in nodes if not n.get("online")), "ceph": None}
    try:
        ceph = pvesh.get("/cluster/ceph/status") or {}
    except PveshError as err:
        if any(text in err.message for text in NO_CEPH):
            return status
        raise
    flags = {f.get("name"): bool(f.get("value")) for f in pvesh.get("/cluster/ceph/flags") or []}
    checks = (ceph.get("health") or {}).get("checks") or {}
    status["ceph"] = {"health": (ceph.get("health") or {}).get("status") or "HEALTH_ERR",
                      "noout": flags.get("noout", False),
                      "redundancy": ["%s (%s)" % (code, ((checks[code] or {}).get("summary") or {}).get("message", ""))
                                     for code in sorted(checks) if code in REDUNDANCY_CHECKS]}
    return status


def parse_quorumtool(text: str) -> dict:
    """`corosync-quorumtool -s` (corosync's votequorum, which Proxmox VE's cluster runs on): {total, quorum, local}
    - the votes present now (a QDevice's included), the votes quorum needs, this node's own votes."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Total votes", "Quorum") and value.split():
            found["total" if key.strip() == "Total votes" else "quorum"] = int(value.split()[0])
        fields = line.split()
        if "(local)" in fields and len(fields) >= 2 and fields[1].isdigit():
            found["local"] = int(fields[1])
    missing = sorted({"total", "quorum", "local"} - set(found))
    if missing:
        raise ValueError("corosync-quorumtool -s said no %s" % ", ".join(missing))
    return found


def refusals(status: dict, votes: dict | None = None) -> list[str]:
    """Why this is no time to reboot a node of the cluster. votes: parse_quorumtool's, for a cluster node."""
    out = []
    # Only when other nodes are online: a cluster of one has nobody to leave without quorum.
    if votes and len(status["online"]) > 1 and votes["total"] - votes["local"] < votes["quorum"]:
        out.append("rebooting this node takes its %d vote(s) away and leaves the cluster %d of the %d votes "
                   "quorum needs (corosync-quorumtool -s) - the other nodes would lose quorum (HA fences them); "
                   "bring the offline nodes (%s) back first, or add a QDevice to a two-node cluster"
                   % (votes["local"], votes["total"] - votes["local"], votes["quorum"],
                      ", ".join(status["offline"]) or "none"))
    if not status["quorate"]:
        out.append("the cluster is not quorate (nodes offline: %s) - a reboot now could leave it without a majority"
                   % (", ".join(status["offline"]) or "none"))
    if status["ceph"] and status["ceph"]["health"] == "HEALTH_ERR":
        out.append("Ceph is in HEALTH_ERR - a reboot now could take the cluster's storage down")
    elif status["ceph"] and status["ceph"].get("redundancy"):
        out.append("Ceph does not have all its copies yet - %s; another node down now could block I/O: wait until "
                   "it has recovered (ceph health detail)" % "; ".join(status["ceph"]["redundancy"]))
    return out


def unmet(status: dict, nodes: list[str], ceph_health: str | None) -> list[str]:
    """What is not yet back: quorum, a node that was online before, Ceph's former health."""
    out = []
    if not status["quorate"]:
        out.append("the cluster is not quorate")
    missing = sorted(set(nodes) - set(status["online"]))
    if missing:
        out.append("node%s %s not online" % ("s" if len(missing) > 1 else "", ", ".join(missing)))
    if ceph_health and status["ceph"] is not None:
        have = status["ceph"]["health"]
        if HEALTH_RANK.get(have, 2) > HEALTH_RANK.get(ceph_health, 2):
            out.append("Ceph is %s, was %s before the reboot" % (have, ceph_health))
        if status["ceph"].get("redundancy"):
            out.append("Ceph is still recovering - %s" % "; ".join(status["ceph"]["redundancy"]))
    return out


def wait(pvesh, nodes: list[str], ceph_health: str | None, timeout: float, interval: float,
         clock=time.monotonic, sleep=time.sleep) -> tuple[dict, list[str], float]:
    """Read until nothing is unmet or `timeout` seconds passed: (last status, what is still unmet, seconds)."""
    start = clock()
    while True:
        try:
            status = read(pvesh)
            missing = unmet(status, nodes, ceph_health)
        except PveshError as err:  # pmxcfs or the API not back yet after the reboot
            status, missing = {}, ["the cluster's API does not answer yet (%s)" % err.message]
        if not missing or clock() - start >= timeout:
            return status, missing, clock() - start
        sleep(interval)
