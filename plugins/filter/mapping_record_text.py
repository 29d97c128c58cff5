# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mappings record as the text written on the nodes."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import record_text

DOCUMENTATION = r"""
---
name: mapping_record_text
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: The text of a mappings record file
description:
  - The record of P(vfio.proxmox.mapping_record#filter) as the file holds it - sorted JSON; an empty string when
    the record names nothing (the playbook then keeps no file).
options:
  _input:
    description: A record, as P(vfio.proxmox.mapping_record#filter) returns it.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Write the record
  ansible.builtin.copy:
    content: "{{ record | vfio.proxmox.mapping_record_text }}"
    dest: /etc/vfio-proxmox/mappings.json
    mode: "0600"
"""

RETURN = r"""
---
_value:
  description: The file's text, or an empty string.
  type: str
"""


def mapping_record_text(record: dict) -> str:
    return record_text(record)


class FilterModule:
    """vfio.proxmox.mapping_record_text"""

    def filters(self):
        return {"mapping_record_text": mapping_record_text}
