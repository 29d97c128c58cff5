# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""passthrough_plan filter: the role's decisions, computed in Python (see _plan.py)."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils._plan import make_plan


def passthrough_plan(facts: dict, inputs: dict, corosync_conf: str | None = None) -> dict:
    return make_plan(facts, inputs, corosync_conf or None)


class FilterModule:
    """vfio.proxmox planning filter."""

    def filters(self):
        return {"passthrough_plan": passthrough_plan}
