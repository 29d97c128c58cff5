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
  - Read-only - C(changed) is always false. The passthrough role runs it before a reboot, in check mode too.
  - On a node without C(pvesh) (not a Proxmox VE node) there are no guests to consider; RV(reason) says so.
  - When C(pvesh) is there but the guests cannot be read, the task fails - the reboot is refused, not made blind.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  policy:
    description: What a reboot does to running guests.
    type: str
    choices: [refuse, shutdown]
    default: refuse
  node:
    description: The node's name as Proxmox knows it. Default - the short host name.
    type: str
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
report:
  description: One line per guest - what the reboot does to it.
  returned: always
  type: list
  elements: str
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils._guests import GuestsError, decide, read
from ansible_collections.vfio.proxmox.plugins.module_utils._pvesh import Pvesh, PveshError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "policy": {"type": "str", "choices": ["refuse", "shutdown"], "default": "refuse"},
            "node": {"type": "str"},
            "pvesh": {"type": "str", "default": "pvesh"},
        },
        supports_check_mode=True,
    )
    node = module.params["node"] or socket.gethostname().split(".")[0]
    binary = module.get_bin_path(module.params["pvesh"])
    if binary is None:
        module.exit_json(changed=False, proxmox=False, guests=[], refused=[], stop=[], start=[],
                         reason="no pvesh here - not a Proxmox VE node, no guests to consider",
                         report=["no pvesh here - not a Proxmox VE node, no guests to consider"])
    pvesh = Pvesh(module.run_command, binary)
    try:
        guests = read(pvesh, node)
        decision = decide(guests, module.params["policy"])
    except (GuestsError, PveshError, KeyError, ValueError) as err:
        module.fail_json(msg="pve_guests: the guests of node %s cannot be read, so the reboot is refused: %s"
                         % (node, err))
    module.exit_json(changed=False, proxmox=True, guests=guests, reason=None, **decision)


if __name__ == "__main__":
    main()
