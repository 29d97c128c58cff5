# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the SR-IOV planner and the node-side applier (sriov_vfs) decide alike about one VF: the
`ip link set dev PF vf N` arguments for what differs, and the drivers that hand a VF to userspace."""

from __future__ import annotations

# A VF on one of these is held by a process (DPDK) whose /dev/uio device cannot be traced: it counts as busy.
UIO_DRIVERS = ("uio_pci_generic", "igb_uio")


def vf_arguments(wanted: dict, have: dict) -> list[str]:
    """`ip link set dev PF vf N` arguments for what differs (empty: nothing to do)."""
    args = []
    if wanted.get("mac") and wanted["mac"] != have.get("mac"):
        args += ["mac", wanted["mac"]]
    if wanted.get("vlan") is not None and wanted["vlan"] != have.get("vlan"):
        args += ["vlan", str(wanted["vlan"])]
    for key in ("spoofchk", "trust"):
        if wanted.get(key) is not None and wanted[key] != have.get(key):
            args += [key, "on" if wanted[key] else "off"]
    if wanted.get("state") and wanted["state"] != have.get("state"):
        args += ["state", wanted["state"]]
    return args
