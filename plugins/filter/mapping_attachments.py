# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM attachments a mapping plan asks for."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import attachments

DOCUMENTATION = r"""
---
name: mapping_attachments
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: The VM and mapping pairs of a mapping plan
description:
  - One C(vmid), C(mapping) pair for every VM a mapping of P(vfio.proxmox.mapping_plan#filter) names.
options:
  _input:
    description: The result of P(vfio.proxmox.mapping_plan#filter).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Give each VM its mapping
  vfio.proxmox.vm_hostpci:
    vmid: "{{ item.vmid }}"
    mapping: "{{ item.mapping }}"
  loop: "{{ hostvars | vfio.proxmox.mapping_plan(ansible_play_hosts) | vfio.proxmox.mapping_attachments }}"
"""

RETURN = r"""
---
_value:
  description: Dicts with C(vmid), C(mapping), and the mapping's C(entries) and C(nodes).
  type: list
  elements: dict
"""


def mapping_attachments(plan: list) -> list:
    return attachments(plan)


class FilterModule:
    """vfio.proxmox.mapping_attachments"""

    def filters(self):
        return {"mapping_attachments": mapping_attachments}
