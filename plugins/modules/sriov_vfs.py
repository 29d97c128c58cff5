#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: sriov_vfs
short_description: Create and configure SR-IOV virtual functions on the running kernel
version_added: "0.3.0"
description:
  - For each physical function (PF), in this order and each step compared first - checks its vendor:device
    and that it supports the VF count; refuses a count change while any of its VFs is in use; brings the PF's
    link up; sets C(sriov_drivers_autoprobe); writes C(0) and then the new count to C(sriov_numvfs) (the
    kernel refuses one non-zero count over another); sets each VF's MAC, VLAN, spoof check, trust and link
    state with C(ip link set PF vf N); binds the VFs to C(vfio-pci) (loading it first) or releases them from a
    host driver.
  - A VF is in use when it is on C(vfio-pci) and a process holds its IOMMU group open (a running VM, named
    as C(PID (kvm -id VMID))), or when its interface carries an address or sits in a bridge or bond. Then a
    count change, which destroys every VF of the PF, is refused and nothing on that PF changes. With the same count,
    a C(vf_driver) change moves the VFs now and is refused the same way - V(vfio-pci) or V(none) while a VF on a
    host driver carries an address or sits in a bridge or bond, V(host) while a VM holds a VF on C(vfio-pci).
  - A VF on a userspace I/O driver (C(uio_pci_generic), C(igb_uio)) is in use too - the process holding it
    cannot be seen. With the same count, a per-VF setting that differs from what the VF has (O(pfs[].settings))
    is set live, so it is refused for a VF in use, naming the VF and the setting, before anything is written.
  - V(host) gives VFs on C(vfio-pci) back to the host's VF driver at once, and has VFs without a driver probed.
  - O(pfs[].vfs=0) for a PF that is no longer on the node is nothing to do (its VFs went with the card) -
    RV(results[].gone).
  - Afterwards the PF must still be up with the addresses it had (a problem is reported otherwise), and each
    VF's IOMMU group is returned with any other device in it.
  - It changes nothing persistent - the VFs are gone at the next boot unless something creates them again.
    The C(vfio.proxmox.sriov) playbook calls it with the plan it makes from the inventory variable
    C(passthrough_sriov) (which the C(vfio.proxmox.passthrough) role does not read), and installs a boot unit
    that makes the same VFs at every boot.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  pfs:
    description: The physical functions and what each should carry.
    type: list
    elements: dict
    required: true
    suboptions:
      address:
        description: PCI address of the PF, for example V(0000:01:00.0).
        type: str
        required: true
      id:
        description: Expected vendor:device of the PF; a different card in that slot is refused.
        type: str
      vfs:
        description: Number of VFs; V(0) removes them.
        type: int
        required: true
      vf_driver:
        description:
          - V(none) - no host driver probes the VFs (C(sriov_drivers_autoprobe=0)) and one already bound to a host
            driver is released, so they stay free for VMs. V(vfio-pci) - the same, then each VF is bound to
            C(vfio-pci). V(host) - the host's VF driver (C(iavf), C(igbvf), C(mlx5_core)) may take them.
        type: str
        choices: [none, vfio-pci, host]
        default: none
      settings:
        description: Per-VF settings; a key left out is left as the driver has it.
        type: list
        elements: dict
        default: []
        suboptions:
          index:
            description: VF index, from V(0).
            type: int
            required: true
          mac:
            description: MAC address.
            type: str
          vlan:
            description: VLAN ID the PF tags the VF's traffic with; V(0) for none.
            type: int
          spoofchk:
            description: Drop frames the VF sends with another source MAC.
            type: bool
          trust:
            description: Let the VF change its MAC and enter promiscuous mode.
            type: bool
          state:
            description: Link state the VF sees.
            type: str
            choices: [auto, enable, disable]
  sysfs_root:
    description: Where sysfs is mounted (tests point it at a fake tree).
    type: path
    default: /sys
  procfs_root:
    description: Where procfs is mounted, to find processes that hold a VF's IOMMU group open.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: Reports every step it would take. After a count change the new VFs do not exist yet, so their
      settings and bindings are not predicted.
  diff_mode:
    support: none
    description: Reports its steps in RV(results[].changes) instead.
notes:
  - Some drivers reset the PF's link for a moment while VFs are created; the module brings it up again.
requirements:
  - C(ip) from iproute2 on the node.
seealso:
  - module: vfio.proxmox.vfio_bind
  - module: vfio.proxmox.pci_facts
  - name: PCI Express I/O Virtualization Howto
    description: The kernel's sysfs interface for SR-IOV.
    link: https://docs.kernel.org/PCI/pci-iov-howto.html
"""

EXAMPLES = r"""
- name: Four VFs on a 10 Gb port, kept free for VMs, with fixed MACs and a VLAN on the first
  vfio.proxmox.sriov_vfs:
    pfs:
      - address: "0000:04:00.0"
        id: "8086:1572"
        vfs: 4
        vf_driver: vfio-pci
        settings:
          - {index: 0, mac: "02:00:04:00:00:00", vlan: 10, spoofchk: true, trust: false}
          - {index: 1, mac: "02:00:04:00:00:01"}

- name: Remove the VFs again
  vfio.proxmox.sriov_vfs:
    pfs:
      - {address: "0000:04:00.0", vfs: 0}
"""

RETURN = r"""
results:
  description: One entry per PF, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: The PF.
      type: str
    interface:
      description: The PF's network interface.
      type: str
    vfs_before:
      description: The VF count before the run.
      type: int
    changes:
      description: Each step taken (or, in check mode, that would be taken), in order.
      type: list
      elements: str
      sample: ["sriov_drivers_autoprobe 0", "sriov_numvfs 4", "enp4s0f0np0 vf 0 mac 02:00:04:00:00:00 vlan 10"]
    vfs:
      description: Each VF after the run, by index.
      type: list
      elements: dict
      contains:
        index:
          description: The VF's index on its PF (C(ip link set PF vf INDEX)).
          type: int
          sample: 0
        address:
          description: The VF's PCI address.
          type: str
          sample: "0000:04:02.0"
        id:
          description: The VF's vendor:device ID.
          type: str
          sample: "8086:154c"
        driver:
          description: The driver bound now (C(vfio-pci), C(iavf), ...); null when none.
          type: str
        iommu_group:
          description: Its IOMMU group; null when it has none (a VM cannot get it).
          type: str
          sample: "41"
        group_peers:
          description: The other devices in its IOMMU group (empty when it is isolated).
          type: list
          elements: str
    problems:
      description: What a VM would trip over - a VF without an IOMMU group or sharing it, a PF whose addresses
        changed.
      type: list
      elements: str
    gone:
      description: The PF is not on the node and O(pfs[].vfs=0) was asked - nothing to remove.
      type: bool
      returned: when the PF is gone
    refused:
      description: Why nothing (more) was done on this PF; the task fails when any PF has it.
      type: str
      returned: when refused
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._sriov_vfs import Applier


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pfs": {"type": "list", "elements": "dict", "required": True, "options": {
                "address": {"type": "str", "required": True},
                "id": {"type": "str"},
                "vfs": {"type": "int", "required": True},
                "vf_driver": {"type": "str", "choices": ["none", "vfio-pci", "host"], "default": "none"},
                "settings": {"type": "list", "elements": "dict", "default": [], "options": {
                    "index": {"type": "int", "required": True},
                    "mac": {"type": "str"},
                    "vlan": {"type": "int"},
                    "spoofchk": {"type": "bool"},
                    "trust": {"type": "bool"},
                    "state": {"type": "str", "choices": ["auto", "enable", "disable"]},
                }},
            }},
            "sysfs_root": {"type": "path", "default": "/sys"},
            "procfs_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    ip = module.get_bin_path("ip", required=True)

    def run_ip(args: list) -> tuple:
        return module.run_command([ip] + args, environ_update={"LC_ALL": "C"})

    driver_dir = os.path.join(module.params["sysfs_root"], "bus", "pci", "drivers", "vfio-pci")
    wants_vfio = any(p["vf_driver"] == "vfio-pci" and p["vfs"] for p in module.params["pfs"])
    if wants_vfio and not os.path.isdir(driver_dir) and not module.check_mode:
        rc, _out, err = module.run_command([module.get_bin_path("modprobe", required=True), "vfio-pci"])
        if rc != 0:
            module.fail_json(msg="sriov_vfs: modprobe vfio-pci failed: %s" % err.strip())
    applier = Applier(module.params["sysfs_root"], module.params["procfs_root"], run_ip, module.check_mode)
    results = []
    for wanted in module.params["pfs"]:
        settings = [{k: v for k, v in s.items() if v is not None} for s in wanted["settings"]]
        results.append(applier.apply(dict(wanted, address=wanted["address"].lower(), settings=settings)))
    refused = ["%s: %s" % (r["address"], r["refused"]) for r in results if r.get("refused")]
    if refused:
        module.fail_json(msg="sriov_vfs: " + "; ".join(refused), results=results,
                         changed=any(r["changed"] for r in results))
    module.exit_json(changed=any(r["changed"] for r in results), results=results)


if __name__ == "__main__":
    main()
