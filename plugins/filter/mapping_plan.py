# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's desired PCI resource mappings."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import MappingsError, mapping_plan

DOCUMENTATION = r"""
---
name: mapping_plan
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: The cluster's PCI resource mappings, gathered from every node's passthrough plan
description:
  - For every device of the given hosts' C(passthrough_plan) that names a C(mapping) (a C(passthrough_devices)
    item key), an entry for that node (its name from M(vfio.proxmox.pci_facts) C(vfio_host.node_name)) with
    the values Proxmox checks - path, vendor:device ID, subsystem ID, IOMMU group. Entries with one name make
    one mapping; the VMs named by C(vm) are listed with it.
  - Fails, naming the host, when a node's Proxmox name is unknown.
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: The hosts to gather, for example C(ansible_play_hosts).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Write each mapping once
  vfio.proxmox.pci_mapping:
    name: "{{ item.name }}"
    entries: "{{ item.entries }}"
  loop: "{{ hostvars | vfio.proxmox.mapping_plan(ansible_play_hosts) }}"
  run_once: true
"""

RETURN = r"""
---
_value:
  description: >-
    C(name), C(entries) (for M(vfio.proxmox.pci_mapping)), C(nodes) (every node of the given hosts - the
    nodes whose entries the run decides), C(vms) (VM IDs) and C(hosts), sorted by name.
  type: list
  elements: dict
"""


def mapping_plan_filter(hostvars, hosts: list) -> list:
    data = {}
    for host in hosts:
        facts = hostvars[host].get("ansible_facts") or {}
        plan = hostvars[host].get("passthrough_plan") or {}
        data[host] = {"node": (facts.get("vfio_host") or {}).get("node_name"), "devices": plan.get("devices") or []}
    try:
        return mapping_plan(data)
    except MappingsError as err:
        raise AnsibleFilterError("mapping_plan: %s" % err) from None


class FilterModule:
    """vfio.proxmox.mapping_plan"""

    def filters(self):
        return {"mapping_plan": mapping_plan_filter}
