# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""passthrough_drift filter: owned files that differ from what the role would write (see _drift.py)."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils._drift import drift


def passthrough_drift(found: list[dict], desired: dict) -> list[str]:
    return drift(found, desired)


class FilterModule:
    """vfio.proxmox converged-state filter."""

    def filters(self):
        return {"passthrough_drift": passthrough_drift}
