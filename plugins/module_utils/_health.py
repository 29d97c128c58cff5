# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Proxmox VE cluster's health around a node's reboot: quorum, the nodes online, Ceph.

Read through `pvesh` on the node (pve-manager): `/cluster/status` (PVE/API2/Cluster.pm: an entry of type
`cluster` with `quorate`, one of type `node` per member with `online`), `/cluster/ceph/status`
(PVE/API2/Cluster/Ceph.pm status: `health.status`; it dies when Ceph is not installed or not initialized -
pveceph's check_ceph_inited - which here means "no Ceph") and `/cluster/ceph/flags` (`noout`).
Before a reboot a cluster that is not quorate, or a Ceph that is in HEALTH_ERR, refuses it; after the reboot
the run waits until the cluster is quorate with every node that was online before and Ceph is back to the
health it had (HEALTH_OK stays OK; WARN may be WARN or OK).
"""

from __future__ import annotations

import time

from ansible_collections.vfio.proxmox.plugins.module_utils._pvesh import PveshError

HEALTH_RANK = {"HEALTH_OK": 0, "HEALTH_WARN": 1, "HEALTH_ERR": 2}
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
    status["ceph"] = {"health": (ceph.get("health") or {}).get("status") or "HEALTH_ERR",
                      "noout": flags.get("noout", False)}
    return status


def refusals(status: dict) -> list[str]:
    """Why this is no time to reboot a node of the cluster."""
    out = []
    if not status["quorate"]:
        out.append("the cluster is not quorate (nodes offline: %s) - a reboot now could leave it without a majority"
                   % (", ".join(status["offline"]) or "none"))
    if status["ceph"] and status["ceph"]["health"] == "HEALTH_ERR":
        out.append("Ceph is in HEALTH_ERR - a reboot now could take the cluster's storage down")
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
