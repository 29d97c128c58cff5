#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: pve_evacuate
short_description: Move a Proxmox VE node's guests away for a reboot, and back after it
version_added: "0.3.0"
description:
  - O(state=evacuated) - the node enters HA maintenance when O(ha_maintenance) (C(ha-manager crm-command
    node-maintenance enable NODE)), each guest of O(migrate) is migrated to its target (VMs online, containers in
    restart mode) and each migration task is waited for; then the module waits until HA has moved every service
    away, and fails when any guest still runs on the node - the reboot is refused then.
  - O(state=returned) - the node leaves HA maintenance and the module waits until HA counts it online and has
    moved its services back; then, with O(back), the guests of O(migrate) are migrated back to the node.
  - O(migrate) and O(ha_maintenance) are what M(vfio.proxmox.pve_guests) decided
    (its RV(vfio.proxmox.pve_guests#module:migrate) and RV(vfio.proxmox.pve_guests#module:ha_maintenance)).
    The passthrough role runs both around a reboot when C(passthrough_reboot_guests=migrate).
  - Idempotent - a guest already where it should be, or gone, is left alone; a node already in (out of) maintenance
    is not asked again. Every wait has O(timeout) and names what it waited for and what it last saw.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  state:
    description: V(evacuated) before the reboot, V(returned) after it.
    type: str
    choices: [evacuated, returned]
    required: true
  node:
    description: The node's name as Proxmox knows it. Default - the short host name.
    type: str
  migrate:
    description:
      - The guests to move - each with C(vmid), C(type) (V(qemu) or V(lxc)), C(target) and C(mode) (V(online) or
        V(restart)).
    type: list
    elements: dict
    default: []
  ha_maintenance:
    description: Whether the node enters (leaves) HA maintenance.
    type: bool
    default: false
  back:
    description: With O(state=returned), migrate the guests of O(migrate) back to the node.
    type: bool
    default: true
  timeout:
    description: Seconds each wait (a migration task, HA moving services) may take.
    type: int
    default: 900
  pvesh:
    description: The C(pvesh) command.
    type: str
    default: pvesh
  ha_manager:
    description: The C(ha-manager) command.
    type: str
    default: ha-manager
attributes:
  check_mode:
    support: full
    description: Says what it would do in RV(done) and changes nothing.
  diff_mode:
    support: none
    description: No file is changed.
"""

EXAMPLES = r"""
- name: Decide what a reboot does to the guests
  vfio.proxmox.pve_guests:
    policy: migrate
  register: guests

- name: Move them away
  vfio.proxmox.pve_evacuate:
    state: evacuated
    migrate: "{{ guests.migrate }}"
    ha_maintenance: "{{ guests.ha_maintenance }}"

- name: Reboot
  ansible.builtin.reboot:

- name: Bring them back
  vfio.proxmox.pve_evacuate:
    state: returned
    migrate: "{{ guests.migrate }}"
    ha_maintenance: "{{ guests.ha_maintenance }}"
"""

RETURN = r"""
done:
  description: What was done (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["entered HA maintenance of pve1", "migrating VM 101 from pve1 to pve2"]
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._evacuate import EvacuateError, Evacuation
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["evacuated", "returned"], "required": True},
            "node": {"type": "str"},
            "migrate": {"type": "list", "elements": "dict", "default": []},
            "ha_maintenance": {"type": "bool", "default": False},
            "back": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 900},
            "pvesh": {"type": "str", "default": "pvesh"},
            "ha_manager": {"type": "str", "default": "ha-manager"},
        },
        supports_check_mode=True,
    )
    params = module.params
    node = params["node"] or socket.gethostname().split(".")[0]
    for index, move in enumerate(params["migrate"]):
        if not isinstance(move.get("vmid"), int) or move.get("type") not in ("qemu", "lxc") \
                or not move.get("target") or move.get("mode") not in ("online", "restart"):
            module.fail_json(msg="migrate[%d]: %r is not a move of pve_guests (vmid, type, target, mode)"
                             % (index, move))
    binary = module.get_bin_path(params["pvesh"])
    if binary is None:
        if params["migrate"] or params["ha_maintenance"]:
            module.fail_json(msg="pve_evacuate: no pvesh on %s, so its guests cannot be moved" % node)
        module.exit_json(changed=False, done=[])
    evacuation = Evacuation(Pvesh(module.run_command, binary), module.run_command,
                            module.get_bin_path(params["ha_manager"]), node, params["timeout"])
    try:
        if params["state"] == "evacuated":
            changed = evacuation.evacuate(params["migrate"], params["ha_maintenance"], module.check_mode)
        else:
            changed = evacuation.give_back(params["migrate"], params["ha_maintenance"], params["back"],
                                           module.check_mode)
    except (EvacuateError, PveshError) as err:
        module.fail_json(msg="pve_evacuate (%s, node %s): %s" % (params["state"], node, err), done=evacuation.done)
    module.exit_json(changed=changed, done=evacuation.done)


if __name__ == "__main__":
    main()
