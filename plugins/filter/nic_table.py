# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A per-host text table of pci_facts results."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._report import nic_table

DOCUMENTATION = r"""
---
name: nic_table
version_added: "0.1.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: Render a host's pci_facts results as a readable NIC table
description:
  - Takes a host's C(ansible_facts) after M(vfio.proxmox.pci_facts) and returns plain text - one row per
    network function with address, vendor:device ID, driver, IOMMU group and its other members, interfaces
    with everything stacked on them and their addresses, management marks and names - followed by the
    host's readiness (IOMMU, interrupt remapping, CPU, kernel, boot loader, vfio modules, management paths).
options:
  _input:
    description: The host's C(ansible_facts) holding C(vfio_pci_devices), C(vfio_iommu_groups) and C(vfio_host).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Show NICs and readiness
  ansible.builtin.debug:
    msg: "{{ ansible_facts | vfio.proxmox.nic_table }}"
"""

RETURN = r"""
---
_value:
  description: The table and readiness lines, separated by newlines.
  type: str
"""


class FilterModule:
    """vfio.proxmox.nic_table"""

    def filters(self):
        return {"nic_table": nic_table}
