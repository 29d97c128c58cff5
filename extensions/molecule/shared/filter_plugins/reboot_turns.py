# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: did the nodes of a cluster reboot one at a time, each with its running guests away?

Replays the Proxmox test double's log (tests/sim/pvesh_double.py, reboot_double.py): "migrate V A -> B",
"ha migrate V A -> B", "ha maintenance enable|disable N", "reboot N"."""

from __future__ import annotations

import re


def reboot_turn_problems(log: list, nodes: list, homes: dict, running: list) -> list:
    """One line per broken rule. homes: {vmid: node before the rollout}; running: the vmids that ran.
    - each node rebooted once;
    - when a node reboots, none of the running guests is on it;
    - when a node reboots, every running guest whose home is another node is at home (the node before it
      brought its guests back first) - so no two turns overlap;
    - a node in HA maintenance is the one rebooting (enabled before its reboot, disabled before the next)."""
    problems = []
    home = {str(k): v for k, v in homes.items()}
    where = dict(home)
    running = [str(v) for v in running]
    in_maintenance = set()
    for entry in log:
        moved = re.match(r"^(?:ha )?migrate (\S+) (\S+) -> (\S+)$", entry)
        if moved:
            where[moved.group(1)] = moved.group(3)
        maintenance = re.match(r"^ha maintenance (enable|disable) (\S+)$", entry)
        if maintenance:
            (in_maintenance.add if maintenance.group(1) == "enable" else in_maintenance.discard)(maintenance.group(2))
        rebooted = re.match(r"^reboot (\S+)$", entry)
        if not rebooted:
            continue
        node = rebooted.group(1)
        here = sorted(v for v in running if where.get(v) == node)
        if here:
            problems.append("%s rebooted with %s on it" % (node, ", ".join(here)))
        away = sorted(v for v in running if home[v] != node and where.get(v) != home[v])
        if away:
            problems.append("%s rebooted while %s were not back home" % (node, ", ".join(away)))
        if in_maintenance - {node}:
            problems.append("%s rebooted while %s were in HA maintenance" % (node, ", ".join(sorted(in_maintenance))))
    for node in nodes:
        count = log.count("reboot %s" % node)
        if count != 1:
            problems.append("%s rebooted %d times" % (node, count))
    return problems


class FilterModule:
    """Molecule-only filters."""

    def filters(self):
        return {"reboot_turn_problems": reboot_turn_problems}
