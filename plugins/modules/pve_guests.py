#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: pve_guests
short_description: Read a Proxmox VE node's guests and decide what a reboot does to them
version_added: "0.3.0"
description:
  - Reads the node's VMs and containers (C(/nodes/NODE/qemu), C(/nodes/NODE/lxc)) and the cluster's HA resources
    (C(/cluster/ha/resources)) through C(pvesh), and decides, for the given O(policy), what a reboot of the node
    does to each guest.
  - V(refuse) - a running guest refuses the reboot, named. V(shutdown) - the running guests are shut down by
    Proxmox's own C(stopall) for exactly those IDs (reverse startup order, each guest's own shutdown timeout) and
    started again after the reboot by C(startall); an HA-managed guest refuses the reboot under it, since HA
    decides where it runs.
  - V(migrate) - HA-managed running guests are moved by HA when the node enters HA maintenance
    (RV(ha_maintenance)); every other running guest is migrated (VMs online, containers in restart mode) to an
    online node Proxmox allows for it (C(GET /nodes/NODE/qemu/VMID/migrate)), O(migrate_to) or the one with the
    fewest running guests, see RV(migrate). A guest that cannot move - a local device such as a passed-through
    C(hostpciN) (a mapped device only when its mapping is live-migration-capable), a local disk or CD-ROM, a
    container's local bind or device mount point, no online node to go to - refuses the reboot, named with why.
    M(vfio.proxmox.pve_evacuate) carries the moves out.
  - Read-only - C(changed) is always false. The passthrough role runs it before a reboot, in check mode too.
  - On a node without C(pvesh) (not a Proxmox VE node) there are no guests to consider; RV(reason) says so.
  - When C(pvesh) is there but the guests cannot be read, the task fails - the reboot is refused, not made blind.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  policy:
    description: What a reboot does to running guests.
    type: str
    choices: [refuse, shutdown, migrate]
    default: refuse
  node:
    description: The node's name as Proxmox knows it. Default - the short host name.
    type: str
  migrate_to:
    description:
      - With O(policy=migrate), the node every migrated guest goes to. It must be online and allowed for each
        guest, or the reboot is refused. Default - for each guest the allowed online node with the fewest running
        guests.
    type: str
  migrate_back:
    description: With O(policy=migrate), whether the migrated guests come back after the reboot (said in RV(report)).
    type: bool
    default: true
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
- name: What would a reboot do to this node's guests?
  vfio.proxmox.pve_guests:
    policy: shutdown
  register: guests

- name: Refuse the reboot when the policy cannot take care of a guest
  ansible.builtin.fail:
    msg: "{{ guests.refused }}"
  when: guests.refused | length > 0
"""

RETURN = r"""
proxmox:
  description: Whether the node answers Proxmox VE's API (C(pvesh) exists).
  returned: always
  type: bool
reason:
  description: Why there is nothing to consider, when there is not.
  returned: always
  type: str
  sample: no pvesh here - not a Proxmox VE node, no guests to consider
guests:
  description: The node's guests.
  returned: always
  type: list
  elements: dict
  contains:
    vmid:
      description: The guest's ID.
      type: int
    type:
      description: V(qemu) or V(lxc).
      type: str
    name:
      description: The guest's name.
      type: str
    status:
      description: Proxmox's status, for example V(running) or V(stopped).
      type: str
    ha:
      description: The guest's HA resource state, or null when HA does not manage it.
      type: str
refused:
  description: Why the reboot is refused - one line per guest the policy cannot take care of. Empty - it may go on.
  returned: always
  type: list
  elements: str
  sample: ["VM 100 (firewall) is running"]
stop:
  description: The IDs to shut down before the reboot (O(policy=shutdown)).
  returned: always
  type: list
  elements: int
start:
  description: The IDs to start again after the reboot.
  returned: always
  type: list
  elements: int
migrate:
  description: The guests to migrate before the reboot (O(policy=migrate)), for M(vfio.proxmox.pve_evacuate).
  returned: always
  type: list
  elements: dict
  contains:
    vmid:
      description: The guest's ID.
      type: int
    type:
      description: V(qemu) or V(lxc).
      type: str
    name:
      description: The guest's name.
      type: str
    node:
      description: The node it runs on now (this node).
      type: str
    target:
      description: The node it is migrated to.
      type: str
    mode:
      description: V(online) (a VM, live) or V(restart) (a container - stopped, moved, started).
      type: str
ha_maintenance:
  description: Whether the node enters HA maintenance for the reboot - HA-managed guests run on it (O(policy=migrate)).
  returned: always
  type: bool
report:
  description: One line per guest - what the reboot does to it.
  returned: always
  type: list
  elements: str
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._guests import (
    GuestsError,
    decide,
    read,
    read_cluster,
    read_moves,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "policy": {"type": "str", "choices": ["refuse", "shutdown", "migrate"], "default": "refuse"},
            "node": {"type": "str"},
            "migrate_to": {"type": "str"},
            "migrate_back": {"type": "bool", "default": True},
            "pvesh": {"type": "str", "default": "pvesh"},
        },
        supports_check_mode=True,
    )
    node = module.params["node"] or socket.gethostname().split(".")[0]
    binary = module.get_bin_path(module.params["pvesh"])
    if binary is None:
        module.exit_json(changed=False, proxmox=False, guests=[], refused=[], stop=[], start=[], migrate=[],
                         ha_maintenance=False,
                         reason="no pvesh here - not a Proxmox VE node, no guests to consider",
                         report=["no pvesh here - not a Proxmox VE node, no guests to consider"])
    pvesh = Pvesh(module.run_command, binary, timeout=60)
    try:
        guests = read(pvesh, node)
        policy = module.params["policy"]
        running = [g for g in guests if g["status"] == "running"]
        migrating = policy == "migrate" and bool(running)
        decision = decide(guests, policy, node, moves=read_moves(pvesh, node, guests) if migrating else None,
                          cluster=read_cluster(pvesh, node) if migrating else None,
                          migrate_to=module.params["migrate_to"], back=module.params["migrate_back"])
    except (GuestsError, PveshError, KeyError, ValueError) as err:
        module.fail_json(msg="pve_guests: the guests of node %s cannot be read, so the reboot is refused: %s"
                         % (node, err))
    module.exit_json(changed=False, proxmox=True, guests=guests, reason=None, **decision)


if __name__ == "__main__":
    main()
