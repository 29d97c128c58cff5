#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: pci_mapping
short_description: Create, update or delete a Proxmox VE cluster PCI resource mapping
version_added: "0.3.0"
description:
  - Manages one cluster-wide PCI resource mapping (C(/etc/pve/mapping/pci.cfg), Datacenter - Resource
    Mappings in the GUI) through C(pvesh) on a cluster node, the way the GUI writes it. A VM then uses the
    device as a C(hostpciN) line with C(mapping=NAME) and starts on any node that has an entry.
  - Compares parsed fields, not strings - the order of entries and of their fields do not count - so a second
    run changes nothing. Desired IDs are written in lowercase; an existing entry with an ID in capitals is
    rewritten, because Proxmox compares IDs as strings with what sysfs reports and would refuse the VM's start.
    Updates carry the mapping's C(digest), so a change made by someone else in between is refused by Proxmox
    instead of overwritten.
  - Refused before any write, with the option and the value named - a name that is not a Proxmox mapping
    ID, a malformed entry, the same node and path twice, a node that is not a member of the cluster, and an
    entry for this node whose vendor:device ID, subsystem ID or IOMMU group do not match this node's hardware
    as Proxmox reads it (C(pvesh get /nodes/NODE/hardware/pci)).
  - A write decides the entries of O(nodes) only - by default the nodes that O(entries) name. Every other
    node's entries (made in the GUI, by Terraform, or by a run that covered other nodes) are kept exactly as
    Proxmox holds them, so a run over part of a cluster never drops another node's entries.
  - After a write, Proxmox's own check (C(GET /cluster/mapping/pci?check-node=NODE)) runs for every node the
    task decided; an error there undoes the write and fails the task, so a run leaves either the old mapping
    or a valid new one. Checks of an unchanged mapping run too - a device that changed since the mapping was
    made fails the task, as it would fail the VM's start.
  - With O(record), each write is noted in a record file on the node right after it succeeds - the name of a
    mapping this module created, or the exact former state of a mapping that existed before - and
    O(state=undone) undoes what that record names.
  - A mapping that a VM of the cluster uses (a C(hostpciN) line with C(mapping=NAME) in its configuration, in a
    pending change, or in a snapshot it can be rolled back to) is never deleted - the task leaves it, names the VMs
    in RV(used_by) and warns; a VM would otherwise fail to start with "PCI device mapping not found".
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  name:
    description: The mapping's ID, for example V(wan). A letter, then letters, digits, V(_) or V(-).
    type: str
    required: true
  state:
    description:
      - V(absent) deletes the mapping (nothing happens when there is none; a mapping a VM uses is kept).
      - V(undone) undoes what O(record) names for this mapping - deletes it if this collection created it
        (unless a VM uses it), or puts back the former entries of the recorded nodes, the flags and the
        description if it existed before (with the digest check, so a concurrent change is refused); every
        other node's entries are kept as they are now. Nothing recorded - nothing to do.
    type: str
    choices: [present, absent, undone]
    default: present
  entries:
    description:
      - One entry per node and device, each a dict with these keys (any other key is refused, naming it).
        Several entries for one node form a pool - a VM gets the first free one.
      - C(node) (required) - the node's name as Proxmox knows it.
      - C(path) (required) - the PCI address with its domain, for example V(0000:02:00.0); without the function
        (V(0000:02:00)) the whole multi-function device is mapped.
      - C(id) (required) - the vendor:device ID the device must have, for example V(8086:15f3).
      - C(subsystem_id), or Proxmox's own name C(subsystem-id) - the subsystem vendor:device ID; Proxmox requires it
        whenever the hardware has one.
      - C(iommugroup) - the IOMMU group the device must be in (an integer); Proxmox requires it whenever the device
        has one.
      - C(description) - a note for this node's entry; at most 4096 characters, no comma and no line break
        (Proxmox's format), nothing above U+00FF (Proxmox's cluster file system gives such text back
        double-encoded) - refused before any write.
      - M(vfio.proxmox.pci_facts) returns each device's entry under C(proxmox_mapping), in Proxmox's own format -
        add C(node) and pass it straight in.
    type: list
    elements: dict
  nodes:
    description:
      - The nodes whose entries this task decides - their entries become exactly O(entries); every other
        node's entries are kept. A node named here with no entry loses its entries.
      - Default - the nodes that O(entries) name.
    type: list
    elements: str
  description:
    description:
      - A note for the whole mapping. Not given - left as it is. At most 4096 characters, no line break, nothing
        above U+00FF.
    type: str
  mdev:
    description:
      - The devices provide mediated devices. Must match the hardware (Proxmox checks it).
      - Not given - left as it is (V(false) for a new mapping).
    type: bool
  live_migration_capable:
    description:
      - Mark the devices as live-migratable (experimental in Proxmox VE; needs hardware and driver support).
      - Not given - left as it is (V(false) for a new mapping).
    type: bool
  allow_hardware_change:
    description:
      - An existing entry for the same node and path whose vendor:device ID, subsystem ID or IOMMU group differ
        from the desired one means the hardware changed (a card swapped, a firmware or kernel update that
        renumbered the groups) - the very thing Proxmox's IDs are there to catch. By default that is refused,
        naming the node, path, field and both values; V(true) maps what is there now.
    type: bool
    default: false
  check_nodes:
    description:
      - The nodes to run Proxmox's check for after a write. Default - every node that has an entry.
      - C(pvesh) forwards a check for another node to that node.
    type: list
    elements: str
  node:
    description:
      - The name of the node this task runs on, as Proxmox knows it (Proxmox uses the short host name).
        Its entries are checked against its hardware before anything is written.
    type: str
  record:
    description:
      - A JSON file on the node the task runs on that keeps what this module did, written right after each
        write succeeds (mode 0600), for O(state=undone). The mappings playbook keeps it at
        C(/etc/vfio-proxmox/mappings.json) on every node.
    type: path
  pvesh:
    description: The C(pvesh) command to run.
    type: str
    default: pvesh
attributes:
  check_mode:
    support: full
    description: Reads, validates and compares; writes nothing. A mapping that needs no change is checked by Proxmox
      as in a real run, so C(--check) finds a device that changed.
  diff_mode:
    support: full
    description: The mapping before and after, parsed, with sorted entries.
notes:
  - Runs on one node of the cluster as root (C(pvesh) needs no credentials there); the mapping is
    cluster-wide, so run it once per cluster (C(run_once)).
seealso:
  - name: Proxmox VE documentation - Resource Mapping
    description: How mappings are made in the GUI and used by VMs.
    link: https://pve.proxmox.com/pve-docs/chapter-qm.html#resource_mapping
"""

EXAMPLES = r"""
- name: Give the WAN port of every node one name
  vfio.proxmox.pci_mapping:
    name: wan
    description: WAN port for the firewall VM
    entries:
      - {node: pve1, path: "0000:02:00.0", id: "8086:15f3", subsystem_id: "8086:0000", iommugroup: 12}
      - {node: pve2, path: "0000:03:00.0", id: "8086:15f3", subsystem_id: "8086:0000", iommugroup: 14}
  run_once: true

- name: Read the node's devices
  vfio.proxmox.pci_facts:

- name: Map the port pci_facts found, with the values Proxmox checks (no IDs typed by hand)
  vfio.proxmox.pci_mapping:
    name: wan
    entries:
      - "{{ ansible_facts.vfio_pci_devices | selectattr('address', 'eq', '0000:02:00.0')
           | map(attribute='proxmox_mapping') | map('combine', {'node': ansible_facts.vfio_host.node_name})
           | first }}"
    record: /etc/vfio-proxmox/mappings.json

- name: Undo what the record says this collection did to the mapping
  vfio.proxmox.pci_mapping:
    name: wan
    state: undone
    record: /etc/vfio-proxmox/mappings.json

- name: Remove it (kept, with a warning, while a VM uses it)
  vfio.proxmox.pci_mapping:
    name: wan
    state: absent
  run_once: true
"""

RETURN = r"""
action:
  description: What the run did (or would do in check mode) - V(create), V(update), V(delete), V(restore) or null.
  returned: always
  type: str
  sample: create
mapping:
  description: The mapping as it is meant to be after the run, parsed (null for O(state=absent)).
  returned: always
  type: dict
  sample:
    description: WAN port for the firewall VM
    mdev: false
    live-migration-capable: false
    map:
      - node=pve1,path=0000:02:00.0,id=8086:15f3,subsystem-id=8086:0000,iommugroup=12
checks:
  description: Proxmox's check results per node - lists of C(severity) (V(warning) or V(error)) and C(message).
  returned: always
  type: dict
  sample: {pve1: [], pve2: [{severity: error, message: "Invalid configuration: 'id' does not match ..."}]}
undone:
  description: When a check failed after a write - what was done to put the previous state back.
  returned: on failure after a write
  type: str
  sample: created mapping deleted again
nodes:
  description: The nodes whose entries the task decided.
  returned: when O(state=present)
  type: list
  elements: str
  sample: [pve1, pve2]
kept_entries:
  description: The entries of other nodes, kept as Proxmox holds them.
  returned: when O(state=present)
  type: list
  elements: str
  sample: ["node=pve3,path=0000:05:00.0,id=8086:15f3,iommugroup=20"]
used_by:
  description: The VMs that use the mapping, which is therefore kept (O(state=absent) or O(state=undone)).
  returned: when a delete was asked
  type: list
  elements: str
  sample: ["VM 100 (hostpci1, on pve1)"]
commands:
  description:
    - Every C(pvesh) call made, in order, reads included - each one the command line as a list of arguments -
      C(pvesh), the verb (C(get), C(create), C(set), C(delete)), the API path, the options, and
      C(--output-format json). In check mode only the reads are made.
    - To replay or audit a change, filter on the verb, for example
      C(commands | rejectattr('1', 'eq', 'get')) for the writes.
  returned: always
  type: list
  elements: list
  sample:
    - [pvesh, get, /cluster/mapping/pci/wan, --output-format, json]
    - [pvesh, create, /cluster/mapping/pci, --id, wan, --map, "node=pve1,path=0000:02:00.0,id=8086:15f3,iommugroup=14",
       --output-format, json]
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import MappingsError, RecordFile
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_write import Refused, run
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import Pvesh, PveshError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent", "undone"], "default": "present"},
            # Keys checked by the module_utils (Proxmox's `subsystem-id` is no Python identifier, so no alias).
            "entries": {"type": "list", "elements": "dict"},
            "nodes": {"type": "list", "elements": "str"},
            "description": {"type": "str"},
            "mdev": {"type": "bool"},
            "live_migration_capable": {"type": "bool"},
            "allow_hardware_change": {"type": "bool", "default": False},
            "check_nodes": {"type": "list", "elements": "str"},
            "node": {"type": "str"},
            "record": {"type": "path"},
            "pvesh": {"type": "str", "default": "pvesh"},
        },
        required_if=[("state", "present", ["entries"])],
        supports_check_mode=True,
    )
    params = dict(module.params)
    params["node"] = params["node"] or socket.gethostname().split(".")[0]
    pvesh = Pvesh(module.run_command, module.get_bin_path(params["pvesh"], required=True))
    try:
        result = run(pvesh, params, module.check_mode, RecordFile(params["record"], module.check_mode))
    except (Refused, MappingsError) as err:
        module.fail_json(msg="pci_mapping %s: %s" % (params["name"], err), changed=False, commands=pvesh.calls)
    except PveshError as err:
        module.fail_json(msg="pci_mapping %s: %s" % (params["name"], err), commands=pvesh.calls)
    result["commands"] = pvesh.calls
    if result.get("warning"):
        module.warn(result.pop("warning"))
    if result.get("errors"):
        module.fail_json(msg="pci_mapping %s: Proxmox refuses the mapping - %s (%s)"
                         % (params["name"], "; ".join(result["errors"]), result["undone"] or "nothing was written"),
                         **result)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
