# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What vfio.proxmox.vm_hostpci does: one VM's hostpciN line for a mapping, and nothing else.

Rules from qemu-server: hostpci0..15 ($MAX_HOSTPCI_DEVICES), the `host` default key and
`mapping` exclude each other (src/PVE/QemuServer/PCI.pm parse_hostpci), `pcie=1` needs
a q35 machine ("q35 machine model is not enabled", PCI.pm; machine_type_is_q35 in
src/PVE/QemuServer/Machine.pm). A hostpci device cannot be hot-plugged: the line applies
when the VM next starts.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.proxmox.plugins.module_utils._mapping import CONFIGID_RE
from ansible_collections.vfio.proxmox.plugins.module_utils._pvesh import Pvesh, PveshError

SLOTS = 16
SLOT_RE = re.compile(r"^hostpci(\d+)$")


class Refused(Exception):
    pass


def parse(value: str) -> dict:
    out = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        out[key if sep else "host"] = val if sep else part
    return out


def is_q35(config: dict) -> bool:
    first = (config.get("machine") or "").split(",")[0]
    return "q35" in (first.partition("=")[2] if first.startswith("type=") else first)


def wanted_value(params: dict) -> str:
    value = "mapping=%s" % params["mapping"]
    if params["pcie"]:
        value += ",pcie=1"
    if params["rombar"] is not None:
        value += ",rombar=%d" % int(params["rombar"])
    return value


def same(current: str, wanted: str) -> bool:
    """Parsed, with Proxmox's defaults (pcie=0, rombar=1) filled in on both sides."""
    defaults = {"pcie": "0", "rombar": "1"}
    return dict(defaults, **parse(current)) == dict(defaults, **parse(wanted))


def plan(config: dict, params: dict) -> tuple[str | None, str | None, list[str]]:
    """(slot to write, value, slots to delete) - or Refused naming the option and the value."""
    name = params["mapping"]
    if not CONFIGID_RE.match(name):
        raise Refused("mapping: %r is not a Proxmox mapping ID" % name)
    slots = {key: value for key, value in config.items() if SLOT_RE.match(key)}
    using = sorted((key for key, value in slots.items() if parse(value).get("mapping") == name),
                   key=lambda k: int(SLOT_RE.match(k).group(1)))
    if params["state"] == "absent":
        return None, None, using
    if params["pcie"] and not is_q35(config):
        raise Refused("pcie: true needs the q35 machine type; VM %s has machine %r (qemu-server: q35 machine model "
                      "is not enabled)" % (params["vmid"], config.get("machine") or "default i440fx"))
    value = wanted_value(params)
    requested = None if params["slot"] is None else "hostpci%d" % params["slot"]
    if requested is not None and not 0 <= params["slot"] < SLOTS:
        raise Refused("slot: %d is not between 0 and %d" % (params["slot"], SLOTS - 1))
    if using:
        if requested is not None and requested not in using:
            raise Refused("slot: VM %s already has mapping %s in %s; slot %d asks for %s (remove it first)"
                          % (params["vmid"], name, ", ".join(using), params["slot"], requested))
        slot = requested or using[0]
        return (None if same(slots[slot], value) else slot), value, []
    if requested is not None:
        if requested in slots:
            raise Refused("slot: %s of VM %s holds %r, not this mapping; it is never touched"
                          % (requested, params["vmid"], slots[requested]))
        return requested, value, []
    free = [n for n in range(SLOTS) if "hostpci%d" % n not in slots]
    if not free:
        raise Refused("VM %s has no free hostpci slot (hostpci0-%d are all used)" % (params["vmid"], SLOTS - 1))
    return "hostpci%d" % free[0], value, []


def vm_node(pvesh: Pvesh, vmid: int) -> str:
    """The node a VM is configured on, from the cluster's resource list."""
    found = [r["node"] for r in pvesh.get("/cluster/resources", ["--type", "vm"]) or []
             if r.get("type") == "qemu" and int(r.get("vmid", -1)) == vmid]
    if not found:
        raise Refused("vmid: no VM %s in this cluster (pvesh get /cluster/resources --type vm)" % vmid)
    return found[0]


def run(pvesh: Pvesh, showcmd, params: dict, check_mode: bool) -> dict:
    """`showcmd(vmid, node)` validates the VM where it can (the module: on this node only)."""
    params = dict(params, node=params["node"] or vm_node(pvesh, params["vmid"]))
    path = "/nodes/%s/qemu/%s/config" % (params["node"], params["vmid"])
    try:
        config = pvesh.get(path)
    except PveshError as err:
        raise Refused("vmid: VM %s on node %s: %s" % (params["vmid"], params["node"], err.message)) from None
    slot, value, delete = plan(config, params)
    before = {k: v for k, v in config.items() if SLOT_RE.match(k)}
    after = dict(before)
    for key in delete:
        after.pop(key)
    if slot:
        after[slot] = value
    result = {"changed": before != after, "node": params["node"],
              "slot": slot or next((k for k, v in after.items() if v == value), None),
              "value": value, "removed": delete, "diff": {"before": before, "after": after},
              "applies": "at the next start of the VM" if before != after else None,
              "added": params["state"] == "present" and before != after
              and not any(parse(v).get("mapping") == params["mapping"] for v in before.values())}
    if check_mode or before == after:
        return result
    options = ["--digest", config["digest"]]
    if slot:
        options += ["--%s" % slot, value]
    if delete:
        options += ["--delete", ",".join(delete)]
    pvesh.set(path, options)
    if params["state"] == "present":
        ok, message = showcmd(params["vmid"], params["node"])
        result["showcmd"] = message if ok is not False else None
        if ok is False:
            undo = ["--%s" % slot, before[slot]] if slot in before else ["--delete", slot]
            pvesh.set(path, undo)
            result["error"] = "qm showcmd %s refuses the VM with it: %s (the line was taken out again)" % (
                params["vmid"], message)
    return result
