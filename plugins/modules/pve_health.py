#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: pve_health
short_description: Read, or wait for, a Proxmox VE cluster's quorum and Ceph health around a reboot
version_added: "0.3.0"
description:
  - Reads the cluster's quorum and the nodes online (C(/cluster/status)) and, where Ceph is set up, its health and
    C(noout) flag (C(/cluster/ceph/status), C(/cluster/ceph/flags)) through C(pvesh) on the node.
  - Without O(wait), it reports that, and RV(refused) says why this is no time to reboot a node - the cluster is
    not quorate, or Ceph is in C(HEALTH_ERR).
  - With O(wait), it reads again every O(interval) seconds until the cluster is quorate with every node of
    O(nodes) online and Ceph is back to O(ceph_health) or better, and fails after O(timeout) seconds naming what it
    waited for and what is still not back.
  - Read-only - C(changed) is always false. A node without C(pvesh) is no Proxmox VE node - nothing to read or wait
    for, and RV(reason) says so.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  wait:
    description: Wait for quorum, O(nodes) and O(ceph_health) instead of only reading.
    type: bool
    default: false
  nodes:
    description: The nodes that must be online again (those online before the reboot).
    type: list
    elements: str
    default: []
  ceph_health:
    description: The Ceph health to come back to (the one before the reboot); V(HEALTH_WARN) accepts OK too.
    type: str
    choices: [HEALTH_OK, HEALTH_WARN, HEALTH_ERR]
  timeout:
    description: Seconds to wait at most.
    type: int
    default: 900
  interval:
    description: Seconds between two reads while waiting.
    type: float
    default: 5
  corosync_quorumtool:
    description:
      - The C(corosync-quorumtool) command. On a cluster node (without O(wait)) its C(-s) output tells whether the
        other nodes keep quorum without this node's votes - a QDevice's votes counted; when it cannot be read the
        reboot is refused.
    type: str
    default: corosync-quorumtool
  pvesh:
    description: The C(pvesh) command.
    type: str
    default: pvesh
attributes:
  check_mode:
    support: full
    description: Reads only; behaves the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
"""

EXAMPLES = r"""
- name: Read the cluster's health before the reboot
  vfio.proxmox.pve_health:
  register: before

- name: After the reboot, wait for quorum, the nodes and Ceph
  vfio.proxmox.pve_health:
    wait: true
    nodes: "{{ before.online }}"
    ceph_health: "{{ before.ceph.health if before.ceph else omit }}"
"""

RETURN = r"""
proxmox:
  description: Whether the node answers Proxmox VE's API (C(pvesh) exists).
  returned: always
  type: bool
reason:
  description: Why there is nothing to read, when there is not.
  returned: always
  type: str
standalone:
  description: The node is in no cluster.
  returned: when O(pvesh) exists
  type: bool
quorate:
  description: The cluster has quorum.
  returned: when O(pvesh) exists
  type: bool
online:
  description: The nodes online.
  returned: when O(pvesh) exists
  type: list
  elements: str
offline:
  description: The nodes offline.
  returned: when O(pvesh) exists
  type: list
  elements: str
ceph:
  description:
    - Ceph's C(health) status, whether C(noout) is set, and C(redundancy) - the health checks that say data lacks a
      copy or OSDs are down (C(PG_DEGRADED), C(OSD_DOWN), ...), each with its summary; such a check refuses a reboot
      and is waited out after one. Null without Ceph.
  returned: when O(pvesh) exists
  type: dict
votes:
  description: C(total) votes present, the C(quorum) they need and this node's C(local) votes; null when standalone.
  returned: when O(pvesh) exists, without O(wait)
  type: dict
refused:
  description: Why this is no time to reboot a node (without O(wait)).
  returned: always
  type: list
  elements: str
waited:
  description: Seconds spent waiting.
  returned: when O(wait=true)
  type: float
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._health import parse_quorumtool, read, refusals, wait
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "wait": {"type": "bool", "default": False},
            "nodes": {"type": "list", "elements": "str", "default": []},
            "ceph_health": {"type": "str", "choices": ["HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"]},
            "timeout": {"type": "int", "default": 900},
            "interval": {"type": "float", "default": 5},
            "pvesh": {"type": "str", "default": "pvesh"},
            "corosync_quorumtool": {"type": "str", "default": "corosync-quorumtool"},
        },
        supports_check_mode=True,
    )
    params = module.params
    binary = module.get_bin_path(params["pvesh"])
    if binary is None:
        module.exit_json(changed=False, proxmox=False, refused=[],
                         reason="no pvesh here - not a Proxmox VE node, no cluster to read or wait for")
    # Each call has its own limit: pmxcfs can hang after a reboot, and a wait must still end on time.
    pvesh = Pvesh(module.run_command, binary, timeout=min(30, params["timeout"]) if params["wait"] else 60)
    here = socket.gethostname().split(".")[0]
    if params["wait"]:
        status, missing, waited = wait(pvesh, params["nodes"], params["ceph_health"], params["timeout"],
                                       params["interval"])
        if missing:
            module.fail_json(msg="pve_health on %s: waited %d s for the cluster to be quorate with %s online%s; "
                             "still not back - %s" % (
                                 here, waited, ", ".join(params["nodes"]) or "its nodes",
                                 " and Ceph back to %s" % params["ceph_health"] if params["ceph_health"] else "",
                                 "; ".join(missing)), waited=waited, **status)
        module.exit_json(changed=False, proxmox=True, reason=None, refused=[], waited=waited, **status)
    try:
        status = read(pvesh)
    except PveshError as err:
        module.fail_json(msg="pve_health on %s: the cluster's state cannot be read, so the reboot is refused: %s"
                         % (here, err))
    votes = None
    if not status["standalone"]:
        # Quorum after this node goes down: corosync's own count (node votes and a QDevice's), fail closed.
        tool = module.get_bin_path(params["corosync_quorumtool"])
        rc, out, err = module.run_command([tool, "-s"]) if tool else (None, "", "not installed")
        try:
            votes = parse_quorumtool(out or "")
        except ValueError as why:
            module.fail_json(msg="pve_health on %s: the cluster's votes cannot be read, so the reboot is refused: %s "
                             "(%s)" % (here, why, (err or "exit code %s" % rc).strip()))
    module.exit_json(changed=False, proxmox=True, reason=None, refused=refusals(status, votes), votes=votes,
                     **status)


if __name__ == "__main__":
    main()
