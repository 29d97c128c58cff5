# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why a node is not ready yet."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import verify

DOCUMENTATION = r"""
---
name: passthrough_verify
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: Why a node is not ready for passthrough yet
description:
  - From the plan and M(vfio.proxmox.pci_facts) results read after the run, returns one message per problem -
    the IOMMU is not active, the running kernel's command line lacks a wanted parameter (a parameter the node
    already gives, such as V(intel_iommu=on,igfx_off) for V(intel_iommu=on), counts), a selected device is
    not on C(vfio-pci), or its IOMMU group is not viable because another endpoint in it is on a host driver.
  - An empty list means verified.
positional: facts
options:
  _input:
    description: The plan.
    type: dict
    required: true
  facts:
    description: The host's C(ansible_facts) after M(vfio.proxmox.pci_facts).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Verify
  ansible.builtin.assert:
    that: plan | vfio.proxmox.passthrough_verify(ansible_facts) | length == 0
"""

RETURN = r"""
---
_value:
  description: Problems, one message each; empty when the node is ready.
  type: list
  elements: str
"""


def passthrough_verify(plan: dict, facts: dict) -> list:
    return verify(plan, facts)


class FilterModule:
    """vfio.proxmox.passthrough_verify"""

    def filters(self):
        return {"passthrough_verify": passthrough_verify}
