#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: vfio_bind
short_description: Bind PCI functions to vfio-pci on the running kernel, or release them
version_added: "0.3.0"
description:
  - With O(state=present), writes C(vfio-pci) to each device's C(driver_override), unbinds the driver
    in use and asks the kernel to probe the device again, so it moves to C(vfio-pci) without a reboot.
  - With O(state=absent), clears C(driver_override), unbinds C(vfio-pci) and probes again so the native
    driver takes the device back.
  - A device whose vendor:device no longer matches O(devices[].id) is skipped and reported, never touched.
  - A device whose IOMMU group another process holds open (a running VM) is never released; it is
    reported with status V(in_use) and the process.
  - Loads the C(vfio-pci) module first when its driver directory is missing.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  devices:
    description: The devices to bind or release.
    type: list
    elements: dict
    required: true
    suboptions:
      address:
        description: PCI address, for example V(0000:02:00.0).
        type: str
        required: true
      id:
        description: The vendor:device ID the device must still have, for example V(8086:15f3).
        type: str
        required: true
      state:
        description: This device's own O(state); when not given, O(state) applies.
        type: str
        choices: [present, absent]
  state:
    description: V(present) binds to vfio-pci, V(absent) gives the device back to its native driver.
    type: str
    choices: [present, absent]
    default: present
  sysfs_root:
    description: Root of the sysfs tree. Tests point it at a fake tree.
    type: path
    default: /sys
  procfs_root:
    description: Root of procfs, where the processes holding a VFIO group open are found.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: Reports what would be bound or released without writing.
  diff_mode:
    support: none
    description: Results list each device's driver before and after.
notes:
  - Needs an active IOMMU (populated C(/sys/kernel/iommu_groups)) for C(vfio-pci) to accept the device.
  - A result with status V(pending) means the writes were made but the kernel kept the old driver;
    a reboot with the boot-time configuration applies the binding.
"""

EXAMPLES = r"""
- name: Move the I225-V to vfio-pci now
  vfio.proxmox.vfio_bind:
    devices:
      - {address: "0000:02:00.0", id: "8086:15f3"}

- name: Give it back to igc
  vfio.proxmox.vfio_bind:
    devices:
      - {address: "0000:02:00.0", id: "8086:15f3"}
    state: absent
"""

RETURN = r"""
results:
  description: One entry per device.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address.
      type: str
    status:
      description: bound, already, released, pending, skipped, in_use, would_bind or would_release.
      type: str
    driver:
      description: Driver in use after the run.
      type: str
    reason:
      description: Why a device was skipped or is in use.
      type: str
      returned: when skipped or in_use
  sample:
    - {address: "0000:02:00.0", status: bound, driver: vfio-pci, expected_id: "8086:15f3", found_id: "8086:15f3"}
bound:
  description: Address to driver in use after the run.
  returned: always
  type: dict
  sample: {"0000:02:00.0": vfio-pci}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._bind import rebind


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "devices": {"type": "list", "elements": "dict", "required": True, "options": {
                "address": {"type": "str", "required": True},
                "id": {"type": "str", "required": True},
                "state": {"type": "str", "choices": ["present", "absent"]},
            }},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "sysfs_root": {"type": "path", "default": "/sys"},
            "procfs_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    params = module.params
    driver_dir = os.path.join(params["sysfs_root"], "bus", "pci", "drivers", "vfio-pci")
    if params["state"] == "present" and not os.path.isdir(driver_dir) and not module.check_mode:
        rc, _out, err = module.run_command(["modprobe", "vfio-pci"])
        if rc != 0:
            module.fail_json(msg="vfio_bind: modprobe vfio-pci failed: %s" % err.strip())
    results = []
    for device in params["devices"]:
        try:
            result = rebind(params["sysfs_root"], device["address"].lower(), device["id"].lower(),
                            device["state"] or params["state"], module.check_mode, procfs_root=params["procfs_root"])
        except OSError as exc:
            module.fail_json(msg="vfio_bind: %s: writing sysfs failed: %s" % (device["address"], exc), results=results)
        for warning in result.pop("warnings"):
            module.warn(warning)
        if result["status"] in ("skipped", "in_use"):
            module.warn("vfio_bind: %s %s: %s" % (device["address"], result["status"].replace("_", " "),
                                                  result["reason"]))
        results.append(result)
    module.exit_json(changed=any(r["changed"] for r in results), results=results,
                     bound={r["address"]: r["driver"] for r in results})


if __name__ == "__main__":
    main()
