# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The paths the passthrough role looks at (file_state)."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import watched_paths

DOCUMENTATION = r"""
---
name: passthrough_watch
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: The paths the passthrough role looks at on a node before it plans
description:
  - Returns the files and directories that M(vfio.proxmox.file_state) must report (C(paths)) and read
    (C(read)) so that P(vfio.proxmox.passthrough_plan#filter) can decide - every owned file, its directory,
    backups, the role's records, the initramfs module list, C(/etc/kernel/cmdline) and C(/etc/default/grub).
    They come from the planner's one table of owned files.
options:
  _input:
    description: The role's C(passthrough_state); the paths are the same for both states.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Look at the files the role writes
  vfio.proxmox.file_state:
    paths: "{{ (passthrough_state | vfio.proxmox.passthrough_watch).paths }}"
    read: "{{ (passthrough_state | vfio.proxmox.passthrough_watch).read }}"
"""

RETURN = r"""
---
_value:
  description: C(paths) and C(read), lists of absolute paths.
  type: dict
"""


def passthrough_watch(state: str) -> dict:
    return watched_paths()


class FilterModule:
    """vfio.proxmox.passthrough_watch"""

    def filters(self):
        return {"passthrough_watch": passthrough_watch}
