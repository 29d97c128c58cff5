# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mappings record, read from every node."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._mapping_plan import (
    MappingsError,
    parse_record,
    union,
)

DOCUMENTATION = r"""
---
name: mapping_record
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: The record of what the mappings playbook did, united from every node's copy
description:
  - Every node keeps the same record (C(/etc/vfio-proxmox/mappings.json)) - the mappings this collection created
    (C(mappings)), the former state of each mapping it changed (C(changed)), and the C(hostpci) lines it added
    (C(attached)). M(vfio.proxmox.pci_mapping) and M(vfio.proxmox.vm_hostpci) note each write in the copy of the
    node they run on right after it succeeds; this filter unites the copies, so nothing any of them names is
    forgotten.
  - Fails, naming the file, when a copy is not JSON.
options:
  _input:
    description: The record file's state on each node, as M(vfio.proxmox.file_state) reports it with its text read.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Keep the same record on every node
  ansible.builtin.copy:
    content: "{{ ansible_play_hosts | map('extract', hostvars, ['seen', 'files', path]) | vfio.proxmox.mapping_record
                 | vfio.proxmox.mapping_record_text }}"
    dest: /etc/vfio-proxmox/mappings.json
    mode: "0600"
"""

RETURN = r"""
---
_value:
  description: C(mappings) (names), C(changed) (name - C(nodes) and C(before)) and C(attached) (C(vmid), C(mapping)).
  type: dict
"""


def mapping_record(seen: list) -> dict:
    """seen: the record file's state on each node, as vfio.proxmox.file_state reports it (content read)."""
    try:
        return union([parse_record((state or {}).get("content"), (state or {}).get("path")) for state in seen or []])
    except MappingsError as err:
        raise AnsibleFilterError("mapping_record: %s" % err) from None


class FilterModule:
    """vfio.proxmox.mapping_record"""

    def filters(self):
        return {"mapping_record": mapping_record}
