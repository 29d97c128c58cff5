# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moves a node's guests away for a reboot and back after it, through Proxmox's own API and HA manager.

- HA maintenance: `ha-manager crm-command node-maintenance enable|disable NODE` (pve-ha-manager
  CLI/ha_manager.pm node-maintenance-set queues the CRM command; Manager.pm then sets the node's state to
  `maintenance`, migrates its services away remembering `maintenance_node`, and moves them back once the node
  is `online` again). Its progress is read from `/cluster/ha/status/manager_status` (API2/HA/Status.pm):
  `manager_status.node_status` {node: online|maintenance|unknown|fence} and `manager_status.service_status`
  {sid: {node, state, maintenance_node}}.
- Migrations: `POST /nodes/NODE/qemu/VMID/migrate --target T --online 1` (qemu-server API2/Qemu.pm migrate_vm)
  and `POST /nodes/NODE/lxc/VMID/migrate --target T --restart 1` (pve-container API2/LXC.pm migrate_vm). Both
  start a worker and return its UPID; the task's end is read from `/nodes/NODE/tasks/UPID/status`
  (pve-manager API2/Tasks.pm read_task_status: status `stopped`, exitstatus `OK`).
Every wait has a timeout and says what it waited for; a guest found where it should not be is named.
"""

from __future__ import annotations

import time

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._pvesh import PveshError

# pve-ha-manager Manager.pm: service states that are not "running somewhere or on the way there".
HA_AT_REST = ("stopped", "ignored", "disabled", "error")


class EvacuateError(RuntimeError):
    pass


def manager_status(pvesh) -> dict:
    status = (pvesh.get("/cluster/ha/status/manager_status") or {}).get("manager_status") or {}
    return {"nodes": status.get("node_status") or {}, "services": status.get("service_status") or {}}


def where(pvesh, vmid: int) -> dict | None:
    for resource in pvesh.get("/cluster/resources", ["--type", "vm"]) or []:
        if int(resource.get("vmid") or -1) == vmid:
            return resource
    return None


def short(kind: str, vmid) -> str:
    """`VM 100` or `CT 101`."""
    return "%s %s" % ("VM" if kind == "qemu" else "CT", vmid)


class Evacuation:
    def __init__(self, pvesh, run, ha_manager: str | None, node: str, timeout: int, sleep=time.sleep,
                 clock=time.monotonic) -> None:
        self.pvesh = pvesh
        self.run = run
        self.ha_manager = ha_manager
        self.node = node
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.done: list[str] = []

    def wait(self, what: str, check) -> None:
        """Polls check() -> (done, state now) until done; on timeout names what it waited for and what it saw."""
        deadline = self.clock() + self.timeout
        while True:
            ok, seen = check()
            if ok:
                return
            if self.clock() >= deadline:
                raise EvacuateError("timed out after %ds waiting until %s (last seen: %s)" % (self.timeout, what, seen))
            self.sleep(2)

    def task(self, node: str, upid: object, what: str) -> None:
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            raise EvacuateError("%s: Proxmox returned no task ID (%r)" % (what, upid))
        path = "/nodes/%s/tasks/%s/status" % (node, upid)

        def finished():
            status = self.pvesh.get(path) or {}
            return status.get("status") == "stopped", status.get("status")
        self.wait("%s finishes (task %s)" % (what, upid), finished)
        result = (self.pvesh.get(path) or {}).get("exitstatus")
        if result != "OK":
            raise EvacuateError("%s failed: %s (task %s)" % (what, result, upid))

    def migrate(self, move: dict, source: str, target: str, check_mode: bool) -> bool:
        what = "migrating %s from %s to %s" % (short(move["type"], move["vmid"]), source, target)
        found = where(self.pvesh, move["vmid"])
        if found is None:
            self.done.append("%s %d is gone: nothing to migrate" % (move["type"], move["vmid"]))
            return False
        if found.get("node") == target:
            return False
        if found.get("node") != source:  # someone moved it meanwhile: where it is now is not this node's business
            self.done.append("%s is on %s now, not on %s: left there" % (
                short(move["type"], move["vmid"]), found.get("node"), source))
            return False
        if check_mode:
            self.done.append("would be " + what)
            return True
        flag = ["--online", "1"] if move["mode"] == "online" else ["--restart", "1"]
        base = "/nodes/%s/%s/%d/migrate" % (source, move["type"], move["vmid"])
        upid = self.pvesh.create(base, ["--target", target, *flag])
        self.task(source, upid, what)
        self.done.append(what)
        return True

    def maintenance(self, enable: bool, check_mode: bool) -> bool:
        state = manager_status(self.pvesh)["nodes"].get(self.node)
        if (state == "maintenance") == enable:
            return False
        if check_mode:
            self.done.append("would %s HA maintenance of %s" % ("enter" if enable else "leave", self.node))
            return True
        if not self.ha_manager:
            raise EvacuateError("ha-manager is not installed on %s, so it cannot enter HA maintenance" % self.node)
        argv = [self.ha_manager, "crm-command", "node-maintenance", "enable" if enable else "disable", self.node]
        rc, out, err = self.run(argv)
        if rc != 0:
            raise EvacuateError("%s failed: %s" % (" ".join(argv), (err or out).strip()))
        self.done.append("%s HA maintenance of %s" % ("entered" if enable else "left", self.node))
        return True

    def ha_away(self) -> tuple[bool, str]:
        status = manager_status(self.pvesh)
        here = sorted(sid for sid, s in status["services"].items()
                      if s.get("node") == self.node and s.get("state") not in HA_AT_REST)
        node_state = status["nodes"].get(self.node)
        return node_state == "maintenance" and not here, "node %s, services here: %s" % (node_state, here or "none")

    def ha_back(self) -> tuple[bool, str]:
        status = manager_status(self.pvesh)
        away = sorted(sid for sid, s in status["services"].items() if s.get("maintenance_node") == self.node)
        node_state = status["nodes"].get(self.node)
        return node_state == "online" and not away, "node %s, services still away: %s" % (node_state, away or "none")

    def running_here(self) -> list[str]:
        found = []
        for kind in ("qemu", "lxc"):
            for guest in self.pvesh.get("/nodes/%s/%s" % (self.node, kind)) or []:
                if guest.get("status") == "running":
                    found.append(short(kind, guest["vmid"]))
        return found

    def evacuate(self, moves: list[dict], ha_maintenance: bool, check_mode: bool) -> bool:
        """Moves everything away; when a step fails, what it already did is undone (guests back, maintenance
        left) before the error is raised, so a refused reboot leaves the node as it was."""
        entered, moved = False, []
        try:
            entered = self.maintenance(True, check_mode) if ha_maintenance else False
            for move in moves:
                if self.migrate(move, self.node, move["target"], check_mode):
                    moved.append(move)
            if check_mode:
                return entered or bool(moved)
            if ha_maintenance:
                self.wait("HA has moved every service away from %s (node state maintenance)" % self.node,
                          self.ha_away)
            left = self.running_here()
            if left:
                raise EvacuateError("still running on %s after the evacuation: %s - the reboot is refused"
                                    % (self.node, ", ".join(left)))
        except (EvacuateError, PveshError) as err:
            raise EvacuateError("%s; %s" % (err, self.undo(moved, entered))) from None
        return entered or bool(moved)

    def undo(self, moved: list[dict], entered: bool) -> str:
        """Best effort after a failed evacuation: the guests it moved back, HA maintenance left. Says what it did."""
        undone, failed = [], []
        for move in reversed(moved):
            try:
                self.migrate(move, move["target"], self.node, False)
                undone.append("%s back" % move["vmid"])
            except (EvacuateError, PveshError) as err:
                failed.append("%s stays on %s (%s)" % (move["vmid"], move["target"], err))
        if entered:
            try:
                self.maintenance(False, False)
                undone.append("HA maintenance left")
            except (EvacuateError, PveshError) as err:
                failed.append("%s stays in HA maintenance (%s)" % (self.node, err))
        return "undone: %s%s" % (", ".join(undone) or "nothing to undo",
                                 "; NOT undone: " + "; ".join(failed) if failed else "")

    def give_back(self, moves: list[dict], ha_maintenance: bool, back: bool, check_mode: bool) -> bool:
        changed = self.maintenance(False, check_mode) if ha_maintenance else False
        if ha_maintenance and not check_mode:
            self.wait("%s is online in HA again and HA has moved its services back" % self.node, self.ha_back)
        for move in moves if back else []:
            changed = self.migrate(move, move["target"], self.node, check_mode) or changed
        return changed
