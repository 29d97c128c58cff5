#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The documentation of an action plugin (plugins/action/passthrough_plan.py): discovery runs on the node,
# the rest on the controller.

DOCUMENTATION = r"""
---
module: passthrough_plan
short_description: Discover a node, plan the passthrough role's run on it, compare and decide what follows
version_added: "0.4.0"
description:
  - The passthrough role's one step before the first write. It runs M(vfio.proxmox.pci_facts) on the node,
    looking at and reading every path the plan needs (P(vfio.proxmox.passthrough_watch#filter)), and sets its
    facts on the host as that module does. Then, on the controller, it plans the node as
    P(vfio.proxmox.passthrough_plan#filter) does (every refusal, every decision, the whole desired state of
    every feature), renders the plan's templates from the role's C(templates/) (the
    M(ansible.builtin.template) lookup's search path, so the role's own templates), compares them and the
    rest of the desired state with what discovery saw (P(vfio.proxmox.passthrough_changes#filter)), and
    decides the run's outcome as it stands when no device moves live (P(vfio.proxmox.passthrough_outcome#filter)).
  - Discovery and planning are one task so that a converged run costs one round trip and the facts reach the
    planner as they are. Given O(facts) (and O(files)), it plans from them and does not go to the node.
  - Returns RV(act) - whether the node needs any task after this one - so a converged node skips the rest of
    the role in one step, and RV(report), the lines the administrator reads.
  - Discovery runs with the arguments the step gives it; C(module_defaults) set for M(vfio.proxmox.pci_facts)
    do not apply to it.
  - Never fails on a refusal - it returns the C(errors) of RV(plan) for the role to refuse with, before any write.
    A refused plan is not compared and does not act. It fails when discovery fails, with discovery's message.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  facts:
    description:
      - The host's C(ansible_facts) after M(vfio.proxmox.pci_facts), to plan from instead of discovering.
      - When not given, the step runs M(vfio.proxmox.pci_facts) on the node itself.
    type: dict
  inputs:
    description:
      - The role's inputs with the C(passthrough_) prefix dropped - C(state), C(devices), C(bind_method),
        C(bind_now), C(reboot), C(iommu_pt), C(extra_cmdline), C(blacklist_drivers), C(boot_loader), C(adopt),
        C(sriov).
      - When not given, the step reads the role's variables of those names (C(passthrough_state), ...), as the
        role does; each must be defined (the role's defaults define them all).
    type: dict
  files:
    description:
      - With O(facts), the C(files) that M(vfio.proxmox.pci_facts) returned for the paths of
        P(vfio.proxmox.passthrough_watch#filter); none are known when not given.
      - Without O(facts), discovery's own are used.
    type: dict
  sysfs_root:
    description:
      - Where discovery reads sysfs on the node (M(vfio.proxmox.pci_facts)'s option of that name; tests point it
        at a fake tree). Not with O(facts).
      - V(/sys) when not given.
    type: str
  procfs_root:
    description:
      - Where discovery reads procfs on the node. Not with O(facts).
      - V(/proc) when not given.
    type: str
  notes:
    description:
      - Whether RV(report) ends with the reboot notes - the reboot check mode would do, or the one the run leaves
        to the administrator. V(false) for the entry points that only plan or verify.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reads and decides only; in check mode the outcome and the notes are check mode's.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
  action:
    support: full
    description: An action plugin - discovery runs on the node, the rest on the controller.
seealso:
  # The filters it runs in one step are named in the description (a seealso of a filter needs plugin/plugin_type,
  # which ansible-core 2.14's validate-modules does not know).
  - module: vfio.proxmox.pci_facts
    description: The discovery it runs on the node, and whose results it plans from.
  - module: vfio.proxmox.owned_files
    description: What writes the files the plan wants, when it says so.
"""

EXAMPLES = r"""
- name: Discover the node, plan, compare with the node and decide
  vfio.proxmox.passthrough_plan:
    inputs:
      devices: [{interface: enp2s0}]
  register: planned

- name: Refuse what would break the node, or show the plan
  ansible.builtin.assert:
    that: planned.plan.errors | length == 0
    fail_msg: "{{ planned.plan.errors }}"
    success_msg: "{{ planned.report }}"
    quiet: "{{ planned.quiet }}"

- name: Plan from facts discovered earlier, without going to the node
  vfio.proxmox.passthrough_plan:
    facts: "{{ ansible_facts }}"
    files: "{{ seen.files }}"  # a pci_facts result with the paths of the passthrough_watch filter
    inputs:
      devices: [{interface: enp2s0}]
  register: planned_again
"""

RETURN = r"""
ansible_facts:
  description: What M(vfio.proxmox.pci_facts) found, set on the host as that module sets it.
  returned: when O(facts) is not given and discovery succeeds
  type: dict
check_mode:
  description: Whether the step ran in check mode - the task's own, which C(ansible_check_mode) misses when
    check mode is set on a task or on an include's C(apply).
  returned: success
  type: bool
plan:
  description: The whole plan, as P(vfio.proxmox.passthrough_plan#filter) returns it - C(errors), C(warnings),
    C(reasons), the decisions and the desired state.
  returned: success
  type: dict
changes:
  description: What the run writes, removes and rebuilds, as P(vfio.proxmox.passthrough_changes#filter) returns
    it; C(any=false) on a converged node and on a refused plan.
  returned: success
  type: dict
outcome:
  description:
    - The drivers after the run and whether the node must reboot, as P(vfio.proxmox.passthrough_outcome#filter)
      returns them without live bind results - C(bound), C(moved_live), C(reboot_required), C(reboot_reasons),
      C(reboot_now) (the role reboots the node in this run) and C(notes) (what the run says about the reboot).
    - Final unless the plan binds a device live (C(plan.bind_live)); the role decides again after that.
  returned: success
  type: dict
act:
  description:
    - Whether the node needs any task after this step - a file to write or remove, a rebuild, a device to bind
      or release live, SR-IOV to apply, a reboot, or a verification that fails on the facts just read (they are
      current when nothing moves). False on a converged node and on a refused plan.
  returned: success
  type: bool
report:
  description: The lines the administrator reads - the plan's warnings (marked C(WARNING:)) and reasons when it
    selects, warns about or involves anything, then the reboot notes when they are final.
  returned: success
  type: list
  elements: str
quiet:
  description: True when RV(report) is empty, so an assert that shows it prints nothing.
  returned: success
  type: bool
"""
