#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: vfio_ready
short_description: Prove that a VM could use PCI devices, by opening them through VFIO as QEMU does
version_added: "0.3.0"
description:
  - For each device, opens C(/dev/vfio/vfio), checks the VFIO API version and the type-1 IOMMU extension,
    opens the device's IOMMU group C(/dev/vfio/<group>), checks that the group is viable, adds it to the
    container, sets the IOMMU type, gets the device by its PCI address and reads the vendor and device IDs
    from its PCI config region - the calls QEMU makes when a VM starts with the device.
  - A device passes (status V(ready)) when all of this works and the IDs read are the ones expected.
    A group that another process holds open - a running VM - is reported as V(busy) with the process,
    and passes too.
  - Fails the task, naming each device and the reason, when any device is not ready - for example a group
    that is not viable because another member is still bound to a host driver.
  - Read-only. The group is held for a moment only; a VM started at that very moment fails to start.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  devices:
    description: The devices to check.
    type: list
    elements: dict
    required: true
    suboptions:
      address:
        description: PCI address, for example V(0000:02:00.0).
        type: str
        required: true
      id:
        description: The vendor:device ID its config space must show, for example V(8086:15f3).
        type: str
        required: true
  sysfs_root:
    description: Root of the sysfs tree (the device's IOMMU group and driver are read there).
    type: path
    default: /sys
  dev_root:
    description: Root of the device tree holding C(vfio/vfio) and C(vfio/<group>).
    type: path
    default: /dev
  procfs_root:
    description: Root of procfs, to name the process holding a busy group.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: Changes nothing; runs the same checks in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
notes:
  - Needs root, an active IOMMU and the devices bound to C(vfio-pci).
seealso:
  - name: VFIO - Linux kernel documentation
    description: The container, group and device sequence this module follows.
    link: https://docs.kernel.org/driver-api/vfio.html
  - module: vfio.proxmox.vfio_bind
"""

EXAMPLES = r"""
- name: Prove the I225-V is ready for a VM
  vfio.proxmox.vfio_ready:
    devices:
      - {address: "0000:02:00.0", id: "8086:15f3"}
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
    group:
      description: IOMMU group, or null.
      type: str
    status:
      description: V(ready), V(busy) (held open by another process, named in C(reason)) or V(failed).
      type: str
    found_id:
      description: vendor:device read from the config region through VFIO, or null.
      type: str
    reason:
      description: Why the device is not ready, or which process holds it; null when ready.
      type: str
  sample:
    - {address: "0000:02:00.0", group: "12", status: ready, expected_id: "8086:15f3", found_id: "8086:15f3",
       reason: null}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vfio_open import check_device


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "devices": {"type": "list", "elements": "dict", "required": True, "options": {
                "address": {"type": "str", "required": True},
                "id": {"type": "str", "required": True},
            }},
            "sysfs_root": {"type": "path", "default": "/sys"},
            "dev_root": {"type": "path", "default": "/dev"},
            "procfs_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    params = module.params
    results = [check_device(d["address"].strip().lower(), d["id"].strip().lower(), params["sysfs_root"],
                            params["dev_root"], params["procfs_root"]) for d in params["devices"]]
    problems = [r["reason"] for r in results if r["status"] == "failed"]
    if problems:
        module.fail_json(msg="vfio_ready: not ready for a VM - %s" % "; ".join(problems), results=results,
                         changed=False)
    module.exit_json(changed=False, results=results)


if __name__ == "__main__":
    main()
