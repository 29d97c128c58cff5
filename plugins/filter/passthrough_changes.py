# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a passthrough run writes and rebuilds."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes

DOCUMENTATION = r"""
---
name: passthrough_changes
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: What a passthrough run must change on a node
description:
  - Compares the desired state from P(vfio.proxmox.passthrough_plan#filter), with its templates rendered on the
    controller, against what M(vfio.proxmox.file_state) saw, and returns the files to write and remove,
    backups to take and restore, directories to create and remove, whether the initramfs block and the
    command line change, and the rebuilds to run in order (including any an interrupted run left pending).
  - A converged node gives C(any=false), so the role skips every writing task at once.
  - C(units) - the SR-IOV unit to disable before its file goes (C(disable)), to enable after it is written
    (C(enable)) and whether systemd must reload (C(reload)). In check mode a unit whose file is not on the node
    yet is not in C(enable) (systemd cannot be asked about it); the file's write is reported instead.
positional: files, rendered, check_mode
options:
  _input:
    description: The plan.
    type: dict
    required: true
  files:
    description: The C(files) that M(vfio.proxmox.file_state) returned.
    type: dict
    required: true
  rendered:
    description: The texts of the plan's files that have a template, in the plan's order.
    type: list
    elements: str
    required: true
  check_mode:
    description: Whether the run is in check mode.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Decide what to write
  ansible.builtin.set_fact:
    changes: "{{ plan | vfio.proxmox.passthrough_changes(seen.files, rendered) }}"
"""

RETURN = r"""
---
_value:
  description: C(write), C(remove), C(backup), C(restore), C(dirs), C(remove_dirs), C(block), C(cmdline),
    C(rebuild) (of V(initramfs), V(grub), V(refresh), in that order), C(remove_state_dir), C(units) and C(any).
  type: dict
"""


def passthrough_changes(plan: dict, files: dict, rendered: list, check_mode: bool = False) -> dict:
    return changes(plan, files, list(rendered), bool(check_mode))


class FilterModule:
    """vfio.proxmox.passthrough_changes"""

    def filters(self):
        return {"passthrough_changes": passthrough_changes}
