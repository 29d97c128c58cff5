# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converged-state filters for the passthrough role (logic in _drift.py)."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils._drift import block_pattern, drift


def passthrough_drift(found: list[dict], desired: list[dict], read: dict | None = None) -> list[str]:
    return drift(found, desired, read)


def passthrough_block_pattern(marker: str, lines: list[str]) -> str:
    return block_pattern(marker, lines)


class FilterModule:
    """vfio.proxmox converged-state filters."""

    def filters(self):
        return {"passthrough_drift": passthrough_drift, "passthrough_block_pattern": passthrough_block_pattern}
