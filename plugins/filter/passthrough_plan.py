# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The passthrough role's plan: refusals, decisions and the whole desired state."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node

DOCUMENTATION = r"""
---
name: passthrough_plan
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: Decide what the passthrough role does on a host, what it refuses, and the desired state
description:
  - Resolves the role's device selectors against M(vfio.proxmox.pci_facts) results and returns every
    refusal (malformed or unknown selectors and options, duplicates, bridges, IOMMU group not isolated, the
    node's storage or a group sibling holding it, lockout through a management path, Open vSwitch bridge or
    corosync link, addresses or storage that could not be read, unsafe blacklist or kernel parameters,
    hand-made vfio-pci configuration that conflicts, IOMMU unavailable) and every decision (kernel command
    line tokens for every installed kernel, vfio modules, bind method per vendor:device ID, softdeps, boot
    loader).
  - Returns the whole desired state as well - every owned file with its mode and template (or none, to
    remove it), directories, the initramfs-modules block, the command line edit, the record of this run,
    devices to bind or release, pending rebuilds and whether the command line needs a reboot. With
    C(state=absent) the removal is read from the node's records, not from the selection.
  - Composes every feature of the node into that one plan - the SR-IOV virtual functions of C(sriov) too
    (P(vfio.proxmox.sriov_plan#filter) rules, C(sriov) in the result) - and refuses conflicts between them
    before anything is written - a PF also passed through, a VF passed through that a count change or a dropped
    PF would destroy or C(vf_driver=host) would bind differently, a path two features claim.
positional: inputs, files
options:
  _input:
    description: The host's C(ansible_facts) after M(vfio.proxmox.pci_facts).
    type: dict
    required: true
  inputs:
    description:
      - The role's inputs with the C(passthrough_) prefix dropped - C(state), C(devices), C(bind_method),
        C(bind_now), C(reboot), C(iommu_pt), C(extra_cmdline), C(blacklist_drivers), C(boot_loader), C(adopt),
        C(sriov).
    type: dict
    required: true
  files:
    description:
      - The C(files) that M(vfio.proxmox.file_state) returned for the paths of
        P(vfio.proxmox.passthrough_watch#filter).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Plan
  ansible.builtin.set_fact:
    plan: "{{ ansible_facts | vfio.proxmox.passthrough_plan({'devices': [{'interface': 'enp2s0'}]}, seen.files) }}"
"""

RETURN = r"""
---
_value:
  description:
    - C(errors) and C(warnings) (messages naming the variable and value), C(reasons) (why each decision was
      taken), C(devices), C(targets), C(cmdline_tokens), C(modules), C(ids), C(address_binds), C(softdeps),
      C(blacklist), C(boot_loader), C(bind_now), C(reboot), and the desired state - C(act), C(files),
      C(dirs), C(block), C(cmdline), C(state_record), C(pending), C(bind_targets), C(bind_drivers),
      C(reboot_for_cmdline), C(reboot_tokens), C(remove_dirs), C(restore_backups); C(verify) (passthrough's
      checks apply) and C(sriov) - the SR-IOV part - C(pfs), C(apply) (what M(vfio.proxmox.sriov_vfs) is given -
      the PFs not yet as planned and the released ones), C(files), C(dirs), C(unit) (C(enable), C(disable)),
      C(live), C(involved).
  type: dict
"""


def passthrough_plan(facts: dict, inputs: dict, files: dict | None = None) -> dict:
    return plan_node(facts, inputs, files or {})


class FilterModule:
    """vfio.proxmox.passthrough_plan"""

    def filters(self):
        return {"passthrough_plan": passthrough_plan}
