# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV planning filter: passthrough_sriov checked against pci_facts, in sriov_vfs' terms."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils._sriov_plan import sriov_plan


def sriov_plan_filter(facts: dict, entries, passthrough_devices=None, state: str = "present",
                      record: str | None = None) -> dict:
    return sriov_plan(facts, entries, set(passthrough_devices or []), state, record)


class FilterModule:
    """vfio.proxmox SR-IOV filters."""

    def filters(self):
        return {"sriov_plan": sriov_plan_filter}
