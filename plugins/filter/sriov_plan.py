# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV planning - passthrough_sriov checked against pci_facts, in sriov_vfs' terms."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import sriov_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._inputs import checked_inputs

DOCUMENTATION = r"""
---
name: sriov_plan
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: SR-IOV virtual functions from inventory, checked against the node
description:
  - Resolves each item's physical function (PF) by C(address), C(interface) or C(mac), checks its vendor:device
    against C(id), that it supports SR-IOV (C(sriov_totalvfs)) and the count C(vfs), and returns what
    M(vfio.proxmox.sriov_vfs) takes as O(vfio.proxmox.sriov_vfs#module:pfs).
  - Each VF gets a stable MAC unless C(vf_macs=keep) or its C(vf) item gives one - C(02), the last three bytes of
    the PF's MAC and the VF index in two bytes - so a VF never comes up with an all-zero or random MAC.
  - Refused, each naming the item and the value - an unknown key, a PF that is not found, is a VF itself, is
    another card than C(id), cannot do SR-IOV or not that many VFs, is also passed through whole; a bad MAC,
    VLAN, boolean or link state; a MAC given twice, or a MAC a NIC of the node already has (the PF's own, the
    management NIC's; a VF keeping its own MAC is fine); C(vf_driver=vfio-pci) with the IOMMU off; a count change
    while a VF of that PF is in use (on vfio-pci with its IOMMU group open by a running VM, or carrying an
    address, a bridge or a bond) - a count change destroys every VF; and a C(vf_driver) change with the same
    count that moves a VF now - off its host driver (V(vfio-pci), V(none)) while its interface carries an
    address, a bridge, a bond, the management path or the address Ansible came in through (or the network could
    not be read), or from vfio-pci (V(host)) while a running VM holds it.
  - A PF the boot configuration (C(record)) names that is no longer planned gets 0 VFs - unless its card is gone
    or another card is in that slot; then it is only dropped, with a warning, so cleanup converges.
  - A PF that carries the management path may get VFs; a count change on it is a warning (some drivers reset
    the port for a moment).
options:
  _input:
    description: C(ansible_facts) with M(vfio.proxmox.pci_facts) results.
    type: dict
    required: true
  entries:
    description:
      - The C(passthrough_sriov) list. Each item - one of C(address), C(interface), C(mac) (the PF); C(vfs); and
        optionally C(id) (the PF's vendor:device), C(vf_driver) (V(none) - default, no host driver takes the VFs;
        V(vfio-pci); V(host)), C(vf_macs) (V(derive) - default - or V(keep)) and C(vf), a list of
        C(index), C(mac), C(vlan), C(trust), C(spoofchk), C(state) (V(auto), V(enable), V(disable)).
    type: list
    elements: dict
    required: true
  passthrough_devices:
    description: PCI addresses passed through whole; a PF among them is refused.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Plan the VFs of a dual-port 10 Gb card
  ansible.builtin.set_fact:
    sriov: "{{ ansible_facts | vfio.proxmox.sriov_plan(passthrough_sriov) }}"
  vars:
    passthrough_sriov:
      - {interface: enp4s0f0np0, id: "8086:1572", vfs: 4, vf_driver: vfio-pci,
         vf: [{index: 0, vlan: 10}, {index: 1, vlan: 20, trust: true}]}
      - {interface: enp4s0f1np1, id: "8086:1572", vfs: 2}

- name: Refuse what would break the node
  ansible.builtin.assert:
    that: sriov.errors | length == 0
    fail_msg: "{{ sriov.errors }}"

- name: Create and configure them now
  vfio.proxmox.sriov_vfs:
    pfs: "{{ sriov.pfs }}"
"""

RETURN = r"""
---
_value:
  description:
    - C(pfs) - per PF C(address), C(id), C(interface), C(total_vfs), C(vfs), C(current_vfs), C(count_changes),
      C(vf_driver), C(settings) (per VF C(index), C(mac) and what was given) and C(selected_by).
    - C(errors), C(warnings), C(reasons) - lists of messages.
  type: dict
"""


def sriov_plan_filter(facts: dict, entries, passthrough_devices=None, state: str = "present",
                      record: str | None = None) -> dict:
    # The same input checks as the role's planner: the feature reads only entries that passed them.
    clean, problems = checked_inputs({"sriov": entries})
    plan = sriov_plan(facts, clean["sriov"], set(passthrough_devices or []), state, record)
    plan["errors"] = problems + [e for e in plan["errors"] if e not in problems]
    return plan


class FilterModule:
    """vfio.proxmox.sriov_plan"""

    def filters(self):
        return {"sriov_plan": sriov_plan_filter}
