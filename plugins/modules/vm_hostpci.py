#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: vm_hostpci
short_description: Give a Proxmox VE VM a PCI resource mapping as one of its hostpci devices
version_added: "0.3.0"
description:
  - Makes one C(hostpciN) line of a VM use a cluster PCI resource mapping (C(mapping=NAME)), through C(pvesh) -
    the VM then gets the device on whichever node it starts, from that node's entries of the mapping.
  - Idempotent - a line that already uses the mapping with the same options (Proxmox's defaults count) is left
    alone; otherwise it takes O(slot) or the first free one. Never touches a C(hostpci) line that uses another
    mapping or a raw C(host=) address, and refuses a slot that holds one.
  - Refuses, before any write, what would keep the VM from starting - O(pcie=true) on a VM whose machine type is
    not q35 (C(machine) is read as Proxmox parses it, so C(viommu=intel,type=q35) is q35); a VM on a node the
    mapping has no entry for; a device the VM already has, as a raw C(hostpciN) address (C(0000:02:00.0), the
    short C(02:00.0), or the whole multi-function device C(02:00)) or through another mapping - QEMU would be
    given it twice. The message names the line.
  - Options compare as Proxmox parses them - C(pcie=on) is C(pcie=1), C(rombar=off) is C(rombar=0).
  - A hostpci device cannot be hot-plugged - the change applies at the VM's next start (C(applies)).
  - When the VM is on the node the task runs on, C(qm showcmd) resolves the VM's devices without starting it, on
    every run - after a change, and also when nothing changed; if Proxmox refuses (the hardware changed, the
    mapping is gone), a line just written is taken out again and the task fails with Proxmox's message. Run the
    task on the VM's node (O(only_here)) so the check runs where the VM starts.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  vmid:
    description: The VM's ID.
    type: int
    required: true
  mapping:
    description: The PCI resource mapping's name (see M(vfio.proxmox.pci_mapping)).
    type: str
    required: true
  state:
    description:
      - V(absent) removes every C(hostpci) line of the VM that uses the mapping. A VM that no longer exists has
        nothing to remove - no error.
    type: str
    choices: [present, absent]
    default: present
  slot:
    description:
      - The C(hostpciN) number to use, 0 to 15. Default - the line that already uses the mapping, else the first
        free one.
    type: int
  pcie:
    description: Attach as PCI Express (C(pcie=1)); needs the q35 machine type.
    type: bool
    default: false
  rombar:
    description: Show the device's ROM to the guest (C(rombar)). Not given - Proxmox's default (shown).
    type: bool
  node:
    description: The node the VM is configured on. Default - where C(pvesh get /cluster/resources) says it is.
    type: str
  this_node:
    description: The name of the node this task runs on, as Proxmox knows it. Default - the short host name.
    type: str
  only_here:
    description:
      - Act only when the VM is on O(this_node); for a VM elsewhere change nothing and return C(elsewhere).
        Run the task on every node of the cluster with this set, and each VM is configured and checked
        (C(qm showcmd)) on its own node.
    type: bool
    default: false
  entries:
    description:
      - The mapping's entries as this run writes them (the O(vfio.proxmox.pci_mapping#module:entries) of the task
        before) - their C(node) and C(path) are read, other keys ignored. They replace the cluster's entries for
        O(entry_nodes), so C(--check) predicts with the mapping the run would write.
      - Default - the mapping as the cluster holds it.
    type: list
    elements: dict
  entry_nodes:
    description: The nodes whose entries O(entries) decides. Default - the nodes O(entries) names.
    type: list
    elements: str
  record:
    description:
      - A JSON file on the node the task runs on that keeps the lines this module added, written right after each
        write (see M(vfio.proxmox.pci_mapping) O(vfio.proxmox.pci_mapping#module:record)).
    type: path
  pvesh:
    description: The C(pvesh) command.
    type: str
    default: pvesh
  qm:
    description: The C(qm) command, for C(qm showcmd) when the VM is on this node.
    type: str
    default: qm
attributes:
  check_mode:
    support: full
    description: Reads and plans; writes nothing and does not run C(qm showcmd).
  diff_mode:
    support: full
    description: The VM's C(hostpci) lines before and after.
notes:
  - Runs on a cluster node as root. Giving a VM a mapping needs C(Mapping.Use) and C(VM.Config.HWType) in Proxmox;
    root has both.
"""

EXAMPLES = r"""
- name: The firewall VM gets the WAN port on whichever node it runs
  vfio.proxmox.vm_hostpci:
    vmid: 100
    mapping: wan
    pcie: true
"""

RETURN = r"""
slot:
  description: The C(hostpciN) line that uses the mapping after the run (null for O(state=absent)).
  returned: always
  type: str
  sample: hostpci0
value:
  description: The line's value.
  returned: always
  type: str
  sample: mapping=wan,pcie=1
removed:
  description: Lines removed (O(state=absent)).
  returned: always
  type: list
  elements: str
applies:
  description: When the change takes effect, or null when nothing changed.
  returned: always
  type: str
  sample: at the next start of the VM
showcmd:
  description: The QEMU command line C(qm showcmd) printed after the change, or why it was not asked.
  returned: when something changed
  type: str
added:
  description: True when the VM had no line for this mapping before and now has one.
  returned: always
  type: bool
elsewhere:
  description: True when O(only_here) is set and the VM is on another node - nothing was done.
  returned: when O(only_here) is set and the VM is on another node
  type: bool
gone:
  description: True when O(state=absent) and the VM no longer exists - nothing to remove.
  returned: when the VM no longer exists
  type: bool
node:
  description: The node the VM is configured on.
  returned: always
  type: str
  sample: pve1
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import MappingsError, RecordFile
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._vm_hostpci import Refused, run


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "vmid": {"type": "int", "required": True},
            "mapping": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "slot": {"type": "int"},
            "pcie": {"type": "bool", "default": False},
            "rombar": {"type": "bool"},
            "node": {"type": "str"},
            "this_node": {"type": "str"},
            "only_here": {"type": "bool", "default": False},
            "entries": {"type": "list", "elements": "dict"},
            "entry_nodes": {"type": "list", "elements": "str"},
            "record": {"type": "path"},
            "pvesh": {"type": "str", "default": "pvesh"},
            "qm": {"type": "str", "default": "qm"},
        },
        supports_check_mode=True,
    )
    params = dict(module.params)
    here = params["this_node"] = params["this_node"] or socket.gethostname().split(".")[0]
    pvesh = Pvesh(module.run_command, module.get_bin_path(params["pvesh"], required=True))

    def showcmd(vmid, node):
        """qm resolves the VM's devices on the node it runs on: elsewhere there is nothing to ask (None)."""
        if node != here:
            return None, "not checked: VM %s is on node %s, this task runs on %s" % (vmid, node, here)
        rc, out, err = module.run_command([module.get_bin_path(params["qm"], required=True), "showcmd", str(vmid)])
        return rc == 0, (out if rc == 0 else err or out).strip()
    try:
        result = run(pvesh, showcmd, params, module.check_mode, RecordFile(params["record"], module.check_mode))
    except (Refused, MappingsError) as err:
        module.fail_json(msg="vm_hostpci %s/%s: %s" % (params["vmid"], params["mapping"], err), changed=False)
    except PveshError as err:
        module.fail_json(msg="vm_hostpci %s/%s: %s" % (params["vmid"], params["mapping"], err))
    if result.get("error"):
        module.fail_json(msg="vm_hostpci %s/%s: %s" % (params["vmid"], params["mapping"], result.pop("error")),
                         **result)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
