# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converged-state filter for the passthrough role (logic in _drift.py)."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils._drift import drift


def passthrough_drift(files: dict, desired: list[dict]) -> list[str]:
    return drift(files, desired)


class FilterModule:
    """vfio.proxmox converged-state filter."""

    def filters(self):
        return {"passthrough_drift": passthrough_drift}
