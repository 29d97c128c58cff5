# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why VM attachments could not be made."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import attach_problems

DOCUMENTATION = r"""
---
name: mapping_attach_problems
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: Why VMs of a mappings run were not given their mapping
description:
  - Reads the registered loop results of M(vfio.proxmox.vm_hostpci) from every node of the play (each node runs
    the loop with O(vfio.proxmox.vm_hostpci#module:only_here)) - each failed item's message, and each VM that every
    node left to another because the VM's node is not in the play.
options:
  _input:
    description: The registered loop result of every node of the play.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Fail for each VM not given its mapping
  ansible.builtin.fail:
    msg: "{{ problems }}"
  vars:
    problems: "{{ ansible_play_hosts | map('extract', hostvars, 'attached') | vfio.proxmox.mapping_attach_problems }}"
  when: problems | length > 0
  run_once: true
"""

RETURN = r"""
---
_value:
  description: One message per problem; empty when every VM was given its mapping.
  type: list
  elements: str
"""


def mapping_attach_problems(per_host: list) -> list:
    return attach_problems(per_host)


class FilterModule:
    """vfio.proxmox.mapping_attach_problems"""

    def filters(self):
        return {"mapping_attach_problems": mapping_attach_problems}
