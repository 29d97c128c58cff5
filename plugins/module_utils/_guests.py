# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a reboot does to the node's guests: read from Proxmox's own API on the node, decided by the policy.

Read (pve-manager, qemu-server, pve-container, pve-ha-manager API paths, through `pvesh` on the node):
`/nodes/NODE/qemu` and `/nodes/NODE/lxc` (vmid, name, status), `/cluster/ha/resources` (sid `vm:100` or
`ct:101`, state). Policies:
- `refuse` (the default): a running guest stops the reboot, named.
- `shutdown`: the running guests are shut down by Proxmox's own `stopall` for exactly those IDs (their
  startup order reversed, their own shutdown timeouts: pve-manager PVE/API2/Nodes.pm stopall and
  get_start_stop_list) and started again after the reboot by `startall --force` for the same IDs (in their
  startup order). HA-managed guests are refused under it: HA decides where they run (HA maintenance and
  migration are the way for them).
A node without `pvesh` is no Proxmox VE node: it has no guests to consider, and the result says so.
"""

from __future__ import annotations

POLICIES = ("refuse", "shutdown")


class GuestsError(RuntimeError):
    """The guests could not be read: the reboot is refused (fail closed)."""


def read(pvesh, node: str) -> list[dict]:
    """The node's guests with their HA state, sorted by ID."""
    ha = {}
    for resource in pvesh.get("/cluster/ha/resources") or []:
        _kind, _sep, vmid = str(resource.get("sid") or "").partition(":")
        if vmid.isdigit():
            ha[int(vmid)] = resource.get("state") or "started"
    guests = []
    for kind in ("qemu", "lxc"):
        for guest in pvesh.get("/nodes/%s/%s" % (node, kind)) or []:
            vmid = int(guest["vmid"])
            guests.append({"vmid": vmid, "type": kind, "name": guest.get("name") or "", "status": guest.get("status"),
                           "ha": ha.get(vmid)})
    return sorted(guests, key=lambda g: g["vmid"])


def label(guest: dict) -> str:
    return "%s %s%s" % ("VM" if guest["type"] == "qemu" else "CT", guest["vmid"],
                        " (%s)" % guest["name"] if guest["name"] else "")


def decide(guests: list[dict], policy: str) -> dict:
    """{refused: [why], stop: [vmid], start: [vmid], report: [line per guest]} for a reboot under `policy`."""
    if policy not in POLICIES:
        raise GuestsError("passthrough_reboot_guests: %r is not one of %s" % (policy, ", ".join(POLICIES)))
    refused, stop, report = [], [], []
    for guest in guests:
        if guest["status"] != "running":
            report.append("%s is %s: nothing to do" % (label(guest), guest["status"]))
            continue
        if policy == "refuse":
            refused.append("%s is running" % label(guest))
            report.append("%s is running: the reboot is refused (passthrough_reboot_guests: refuse)" % label(guest))
        elif guest["ha"] is not None:
            refused.append("%s is managed by HA (state %s): HA, not a shutdown, decides where it runs"
                           % (label(guest), guest["ha"]))
            report.append("%s is HA-managed: the reboot is refused under passthrough_reboot_guests: shutdown"
                          % label(guest))
        else:
            stop.append(guest["vmid"])
            report.append("%s is running: shut down before the reboot, started again after it" % label(guest))
    return {"refused": refused, "stop": stop, "start": list(stop), "report": report}
