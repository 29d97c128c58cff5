# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drivers after a passthrough run and whether to reboot."""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import outcome

DOCUMENTATION = r"""
---
name: passthrough_outcome
version_added: "0.3.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: The drivers after a passthrough run and whether the node must reboot
description:
  - From the plan and the results of M(vfio.proxmox.vfio_bind) (none when no live binding ran) returns the
    driver of every device after the run and whether a reboot is required, with the reasons - the command
    line changed under the running kernel, a device is not on C(vfio-pci) yet, or a released device still is.
  - In check mode the bind results say what would happen, so the prediction is the real run's.
  - Also returns C(reboot_now) (the role reboots the node in this run) and C(notes), what the run says about
    the reboot - the one check mode would do, or the one it leaves to the administrator.
positional: bind_results, check_mode
options:
  _input:
    description: The plan.
    type: dict
    required: true
  bind_results:
    description: The C(results) of M(vfio.proxmox.vfio_bind), or none.
    type: list
    elements: dict
  check_mode:
    description: Whether the run is in check mode (for C(notes)).
    type: bool
    default: false
    version_added: "0.4.0"
"""

EXAMPLES = r"""
- name: Decide about the reboot
  ansible.builtin.set_fact:
    outcome: "{{ plan | vfio.proxmox.passthrough_outcome(bind.results | default(none)) }}"
"""

RETURN = r"""
---
_value:
  description: C(bound) (address to driver), C(moved_live), C(reboot_required), C(reboot_reasons), C(reboot_now)
    and C(notes).
  type: dict
"""


def passthrough_outcome(plan: dict, bind_results: list | None = None, check_mode: bool = False) -> dict:
    # "false" is a truthy string: read it as Ansible reads a boolean.
    return outcome(plan, bind_results, boolean(check_mode, strict=True))


class FilterModule:
    """vfio.proxmox.passthrough_outcome"""

    def filters(self):
        return {"passthrough_outcome": passthrough_outcome}
