# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV on the running kernel, for sriov_vfs: VF count, driver probing, per-VF settings, binding.

Per physical function (PF), in this order, each step compared first: check its vendor:device
and that it can create the VFs; refuse a count change while a VF is in use (on vfio-pci with its
IOMMU group open - a running VM - or carrying an address, a bridge or a bond); bring the PF's
link up; set sriov_drivers_autoprobe; write 0 then the new count (the kernel refuses one
non-zero count over another with EBUSY); set each VF's MAC, VLAN, spoof check, trust and link
state with `ip link set PF vf N ...`; bind VFs to vfio-pci or release them from a host driver.
Afterwards: the PF must still be up with the addresses it had, and each VF's IOMMU group is
reported with the devices it shares it with.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._bind import VFIO, Writer, rebind, write_file
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._netdev import vf_state
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vfio_users import VfioUsersUnknown, vfio_users
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._vf import UIO_DRIVERS, vf_arguments

# Userspace I/O drivers (DPDK and the like): who holds /dev/uioN cannot be known, so such a VF is in use.

# ip's argv (without "ip") -> (rc, stdout, stderr)
IpRunner = Callable[[list[str]], tuple[int, str, str]]


class Refused(Exception):
    """Nothing was changed on this PF; the message says why."""


class PhysicalFunction:
    """One PF on the node, read through sysfs and ip."""

    def __init__(self, sysfs_root: str, address: str, ip: IpRunner) -> None:
        self.reader = TreeReader()
        self.sysfs = sysfs_root
        self.address = address
        self.dir = os.path.join(sysfs_root, "bus", "pci", "devices", address)
        self.ip = ip

    def attr(self, name: str) -> str | None:
        return self.reader.text(os.path.join(self.dir, name), warn=False)

    def pci_id(self, directory: str | None = None) -> str:
        base = directory or self.dir
        return "%s:%s" % (self.reader.hex_id(os.path.join(base, "vendor"), 4),
                          self.reader.hex_id(os.path.join(base, "device"), 4))

    def interface(self) -> str | None:
        names = self.reader.listdir(os.path.join(self.dir, "net"))
        return sorted(names)[0] if names else None

    def vfs(self) -> list[str]:
        """VF addresses in VF index order (virtfn0, virtfn1, ...)."""
        links = sorted((n for n in self.reader.listdir(self.dir) if n.startswith("virtfn")), key=lambda n: int(n[6:]))
        return [self.reader.link_name(os.path.join(self.dir, n)) for n in links]

    def run_ip(self, *args: str) -> str:
        rc, out, err = self.ip(list(args))
        if rc != 0:
            raise Refused("ip %s failed (rc %d): %s" % (" ".join(args), rc, (err or out).strip()))
        return out

    def link(self, interface: str) -> dict:
        data = json.loads(self.run_ip("-j", "-d", "link", "show", "dev", interface) or "[]")
        return data[0] if data else {}

    def addresses(self, interface: str) -> list[str]:
        data = json.loads(self.run_ip("-j", "addr", "show", "dev", interface) or "[]")
        return sorted("%s/%s" % (a["local"], a["prefixlen"]) for entry in data for a in entry.get("addr_info") or []
                      if a.get("scope") == "global")


def _uio(driver: str) -> str:
    return "is on %s, a userspace I/O driver - who holds its /dev/uio device cannot be known" % driver


class Applier:
    """Applies one PF's plan; `changes` lists what was (or, in check mode, would be) done."""

    def __init__(self, sysfs_root: str, procfs_root: str, ip: IpRunner, check: bool, write: Writer | None = None,
                 settle: float = 10.0) -> None:
        self.sysfs = sysfs_root
        self.procfs = procfs_root
        self.ip = ip
        self.check = check
        self.write = write or write_file
        self.settle = settle

    def apply(self, wanted: dict) -> dict:
        pf = PhysicalFunction(self.sysfs, wanted["address"], self.ip)
        result = {"address": wanted["address"], "changes": [], "vfs": [], "problems": []}
        try:
            self._apply(pf, wanted, result)
        except Refused as exc:
            result["refused"] = str(exc)
        except OSError as exc:
            result["refused"] = "%s: %s" % (exc.filename or wanted["address"], exc.strerror or exc)
        result["changed"] = bool(result["changes"])
        return result

    def _apply(self, pf: PhysicalFunction, wanted: dict, result: dict) -> None:
        if not os.path.isdir(pf.dir):
            if not wanted["vfs"]:
                # Its VFs went with the card: nothing is left to remove, so removal converges.
                result["gone"] = True
                return
            raise Refused("%s: no such PCI device" % pf.address)
        if wanted.get("id") and pf.pci_id() != wanted["id"]:
            raise Refused("%s is %s, expected %s - another card is in that slot; nothing touched" % (
                pf.address, pf.pci_id(), wanted["id"]))
        total = pf.attr("sriov_totalvfs")
        if total is None:
            raise Refused("%s has no sriov_totalvfs: it cannot create VFs" % pf.address)
        if wanted["vfs"] > int(total):
            raise Refused("%s supports %s VFs, %d asked" % (pf.address, total, wanted["vfs"]))
        interface = pf.interface()
        result["interface"] = interface
        current = int(pf.attr("sriov_numvfs") or 0)
        result["vfs_before"] = current
        before = pf.addresses(interface) if interface else []
        if current != wanted["vfs"] and current:
            self._refuse_in_use(pf, current, wanted["vfs"])
        elif current == wanted["vfs"]:
            self._refuse_moves(pf, wanted.get("vf_driver") or "none")
            self._refuse_setting_changes(pf, interface, wanted)
        if interface and "UP" not in (pf.link(interface).get("flags") or []):
            self._do(result, "bring %s up" % interface, lambda: pf.run_ip("link", "set", "dev", interface, "up"))
        probe = "1" if wanted.get("vf_driver") == "host" else "0"
        if (pf.attr("sriov_drivers_autoprobe") or "1") != probe:  # the kernel's default is 1
            self._do(result, "sriov_drivers_autoprobe %s" % probe,
                     lambda: self.write(os.path.join(pf.dir, "sriov_drivers_autoprobe"), probe))
        if current != wanted["vfs"]:
            self._count(pf, result, current, wanted["vfs"])
        if self.check and current != wanted["vfs"]:
            return  # the VFs do not exist yet: their settings and bindings are predicted, not read
        self._settings(pf, interface, wanted, result)
        self._bindings(pf, wanted, result)
        if interface and not self.check:
            self._still_up(pf, interface, before, result)

    def _do(self, result: dict, what: str, action) -> None:
        result["changes"].append(what)
        if not self.check:
            action()

    def _users(self) -> dict[str, list[str]]:
        """Who holds which VFIO group open. Fail closed: when /proc cannot be read, that is a refusal."""
        try:
            return vfio_users(self.procfs)
        except VfioUsersUnknown as exc:
            raise Refused("cannot tell which VFs a running VM holds: %s; nothing changed" % exc) from exc

    def _refuse_in_use(self, pf: PhysicalFunction, current: int, wanted: int) -> None:
        users = self._users()
        busy = []
        for address in pf.vfs():
            vf_dir = os.path.join(self.sysfs, "bus", "pci", "devices", address)
            driver = pf.reader.link_name(os.path.join(vf_dir, "driver"), warn=False)
            group = pf.reader.link_name(os.path.join(vf_dir, "iommu_group"), warn=False)
            if driver == VFIO and users.get(group or ""):
                busy.append("%s is on vfio-pci and IOMMU group %s is in use by %s" % (
                    address, group, ", ".join(users[group])))
            if driver in UIO_DRIVERS:
                busy.append("%s %s" % (address, _uio(driver)))
            busy += self._carries(pf, vf_dir, address)
        if busy:
            raise Refused("changing the VF count of %s from %d to %d destroys every VF, and %s - stop that VM or "
                          "move that address first; nothing changed" % (pf.address, current, wanted, "; ".join(busy)))

    def _carries(self, pf: PhysicalFunction, vf_dir: str, address: str) -> list[str]:
        """What each interface of a VF carries: its global addresses and the bridge or bond it is in."""
        busy = []
        for name in pf.reader.listdir(os.path.join(vf_dir, "net")):
            held = pf.addresses(name)
            master = pf.reader.link_name(os.path.join(vf_dir, "net", name, "master"), warn=False)
            if held or master:
                busy.append("%s (%s) carries %s" % (address, name, ", ".join(held + ([master] if master else []))))
        return busy

    def _refuse_moves(self, pf: PhysicalFunction, target: str) -> None:
        """The same count, another driver: the VFs move now, so the same guards as for a count change -
        checked again here on the node, before the first write on this PF."""
        users = self._users()
        cut, taken = [], []
        for address in pf.vfs():
            vf_dir = os.path.join(self.sysfs, "bus", "pci", "devices", address)
            driver = pf.reader.link_name(os.path.join(vf_dir, "driver"), warn=False)
            if target in (VFIO, "none") and driver not in (None, VFIO):
                cut += ["%s %s" % (address, _uio(driver))] if driver in UIO_DRIVERS else []
                cut += self._carries(pf, vf_dir, address)
            elif target == "host" and driver == VFIO:
                group = pf.reader.link_name(os.path.join(vf_dir, "iommu_group"), warn=False)
                if users.get(group or ""):
                    taken.append("%s is in use by %s (IOMMU group %s)" % (address, ", ".join(users[group]), group))
        if cut:
            raise Refused("vf_driver %s takes the VFs of %s off their host driver, and %s - move that first; nothing "
                          "changed" % (target, pf.address, "; ".join(cut)))
        if taken:
            raise Refused("vf_driver host takes the VFs of %s from vfio-pci, and %s - stop that VM first; nothing "
                          "changed" % (pf.address, "; ".join(taken)))

    def _refuse_setting_changes(self, pf: PhysicalFunction, interface: str | None, wanted: dict) -> None:
        """The same count: `ip link set PF vf N mac|vlan|...` changes a running VF - under a VM it cuts the
        guest's network, on the management bridge the connection. Refused for a VF in use, before any write."""
        settings = [s for s in wanted.get("settings") or [] if len(s) > 1]
        if not settings or not interface:
            return
        have = {int(v["vf"]): vf_state(v) for v in pf.link(interface).get("vfinfo_list") or [] if "vf" in v}
        addresses = pf.vfs()
        users = None
        busy = []
        for setting in settings:
            args = vf_arguments(setting, have.get(setting["index"], {}))
            if not args or setting["index"] >= len(addresses):
                continue
            address = addresses[setting["index"]]
            vf_dir = os.path.join(self.sysfs, "bus", "pci", "devices", address)
            driver = pf.reader.link_name(os.path.join(vf_dir, "driver"), warn=False)
            holders = ["it is %s" % _uio(driver)] if driver in UIO_DRIVERS else []
            if driver == VFIO:
                users = self._users() if users is None else users
                group = pf.reader.link_name(os.path.join(vf_dir, "iommu_group"), warn=False)
                if users.get(group or ""):
                    holders.append("IOMMU group %s is in use by %s" % (group, ", ".join(users[group])))
            holders += self._carries(pf, vf_dir, address)
            if holders:
                busy.append("VF %d (%s) would get %s, and %s" % (
                    setting["index"], address, " ".join(args), "; ".join(holders)))
        if busy:
            raise Refused("setting VFs of %s live: %s - stop that VM or move that address first; nothing changed" % (
                pf.address, "; ".join(busy)))

    def _count(self, pf: PhysicalFunction, result: dict, current: int, wanted: int) -> None:
        numvfs = os.path.join(pf.dir, "sriov_numvfs")
        if current:
            self._do(result, "sriov_numvfs 0 (from %d)" % current, lambda: self.write(numvfs, "0"))
        if wanted:
            self._do(result, "sriov_numvfs %d" % wanted, lambda: self.write(numvfs, str(wanted)))
        if self.check:
            return
        deadline = time.monotonic() + self.settle
        while len([a for a in pf.vfs() if a]) != wanted and time.monotonic() < deadline:
            time.sleep(0.2)
        if len(pf.vfs()) != wanted:
            raise Refused("%s: wrote sriov_numvfs %d, but the kernel shows %d VFs after %.0f s" % (
                pf.address, wanted, len(pf.vfs()), self.settle))

    def _settings(self, pf: PhysicalFunction, interface: str | None, wanted: dict, result: dict) -> None:
        settings = [s for s in wanted.get("settings") or [] if len(s) > 1]
        if not settings:
            return
        if not interface:
            raise Refused("%s has no network interface, so its VFs cannot be configured with ip" % pf.address)
        have = {int(v["vf"]): vf_state(v) for v in pf.link(interface).get("vfinfo_list") or [] if "vf" in v}
        for setting in settings:
            args = vf_arguments(setting, have.get(setting["index"], {}))
            if args:
                index = setting["index"]
                self._do(result, "%s vf %d %s" % (interface, index, " ".join(args)),
                         lambda a=args, i=index: pf.run_ip("link", "set", "dev", interface, "vf", str(i), *a))

    def _bindings(self, pf: PhysicalFunction, wanted: dict, result: dict) -> None:
        driver_wanted = wanted.get("vf_driver") or "none"
        vf_id = None
        for index, address in enumerate(pf.vfs()):
            vf_dir = os.path.join(self.sysfs, "bus", "pci", "devices", address)
            vf_id = vf_id or pf.pci_id(vf_dir)
            driver = pf.reader.link_name(os.path.join(vf_dir, "driver"), warn=False)
            if driver_wanted == VFIO and driver != VFIO:
                done = rebind(self.sysfs, address, vf_id, "present", self.check, self.write, self.procfs)
                result["changes"].append("VF %d (%s) to vfio-pci: %s" % (index, address, done["status"]))
                driver = done.get("driver") if not self.check else VFIO
                if driver != VFIO:
                    result["problems"].append("VF %d (%s) is on %s, not vfio-pci, after binding (%s)" % (
                        index, address, driver or "no driver", done.get("reason") or done["status"]))
            elif driver_wanted == "host" and driver in (None, VFIO):
                # Back to the host's VF driver now, not at the next boot: vfio-pci lets go (never while a VM
                # holds the VF - rebind checks again), or a VF without a driver is probed.
                if driver == VFIO:
                    done = rebind(self.sysfs, address, vf_id, "absent", self.check, self.write, self.procfs)
                    status = done["status"]
                    now = done.get("driver") if not self.check else None
                else:
                    override = pf.reader.text(os.path.join(vf_dir, "driver_override"), warn=False)
                    status = "probed" if not self.check else "would_probe"
                    if not self.check:
                        if override not in (None, "", "(null)"):
                            self.write(os.path.join(vf_dir, "driver_override"), "\n")
                        self.write(os.path.join(self.sysfs, "bus", "pci", "drivers_probe"), address)
                    now = pf.reader.link_name(os.path.join(vf_dir, "driver"), warn=False) if not self.check else None
                result["changes"].append("VF %d (%s) to the host driver: %s" % (index, address, status))
                if status == "in_use":
                    raise Refused("VF %d (%s): %s - stop that VM first" % (index, address, done.get("reason")))
                driver = now
                if not self.check and driver in (None, VFIO):
                    result["problems"].append("VF %d (%s) is on %s after probing, not on a host driver" % (
                        index, address, driver or "no driver"))
            elif driver_wanted == "none" and driver and driver != VFIO:
                self._do(result, "VF %d (%s) released from %s" % (index, address, driver),
                         lambda d=driver, a=address: self.write(
                             os.path.join(self.sysfs, "bus", "pci", "drivers", d, "unbind"), a))
                driver = None if not self.check else driver
            group = pf.reader.link_name(os.path.join(vf_dir, "iommu_group"), warn=False)
            members = os.path.join(self.sysfs, "kernel", "iommu_groups", group or "-", "devices")
            peers = sorted(p for p in pf.reader.listdir(members) if p != address)
            result["vfs"].append({"index": index, "address": address, "id": vf_id, "driver": driver,
                                  "iommu_group": group, "group_peers": peers})
            if group is None:
                result["problems"].append("VF %d (%s) has no IOMMU group: a VM cannot get it" % (index, address))
            elif peers:
                result["problems"].append("VF %d (%s) shares IOMMU group %s with %s: a VM gets them together" % (
                    index, address, group, ", ".join(peers)))

    def _still_up(self, pf: PhysicalFunction, interface: str, before: list[str], result: dict) -> None:
        link = pf.link(interface)
        if "UP" not in (link.get("flags") or []):
            pf.run_ip("link", "set", "dev", interface, "up")
            result["changes"].append("bring %s up again" % interface)
        after = pf.addresses(interface)
        if after != before:
            result["problems"].append("%s held %s before and %s after" % (
                interface, ", ".join(before) or "no address", ", ".join(after) or "no address"))
