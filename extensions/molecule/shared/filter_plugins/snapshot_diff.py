# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: which files differ between two {path: checksum} snapshots."""

from __future__ import annotations


def snapshot_diff(after: dict, before: dict) -> list:
    """Paths added, removed or changed, sorted."""
    return sorted(p for p in set(after) | set(before) if after.get(p) != before.get(p))


class FilterModule:
    """Molecule-only filters."""

    def filters(self):
        return {"snapshot_diff": snapshot_diff}
