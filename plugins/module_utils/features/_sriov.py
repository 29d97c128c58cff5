# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV virtual functions from inventory (passthrough_sriov): validation, MACs, guards.

Pure: from pci_facts results, what each physical function (PF) should carry - how many VFs,
which driver may take them, and each VF's MAC, VLAN, trust, spoof check and link state -
or why not. vfio.proxmox.sriov_vfs applies it on the node (and checks again there).
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._sysfs_conf import sets_count_of
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vm_configs import overlaps
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import ADDRESS, MAC
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._inputs import boolean
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._vf import UIO_DRIVERS, vf_arguments

PF_SELECTORS = ("address", "interface", "mac")
PF_OPTIONS = ("id", "vfs", "vf_driver", "vf_macs", "vf")
VF_KEYS = ("index", "mac", "vlan", "trust", "spoofchk", "state")
VF_DRIVERS = ("none", "vfio-pci", "host")
# The feature's rows of the owned-file table: path, mode, template (roles/passthrough/templates).
SRIOV_CONF = "/etc/vfio-proxmox/sriov.conf"
SRIOV_SCRIPT = "/usr/local/sbin/vfio-proxmox-sriov"
SRIOV_UNIT_NAME = "vfio-proxmox-sriov.service"
SRIOV_UNIT = "/etc/systemd/system/" + SRIOV_UNIT_NAME
# systemctl enable makes this link (WantedBy=multi-user.target); its presence says the unit is enabled.
SRIOV_WANTS = "/etc/systemd/system/multi-user.target.wants/" + SRIOV_UNIT_NAME
SRIOV_FILES = (
    (SRIOV_CONF, "0644", "sriov.conf.j2"),
    (SRIOV_SCRIPT, "0755", "vfio-proxmox-sriov.sh.j2"),
    (SRIOV_UNIT, "0644", "vfio-proxmox-sriov.service.j2"),
)
LINK_STATES = ("auto", "enable", "disable")
# Userspace I/O drivers (DPDK and the like): the process holding /dev/uioN is not discoverable, so a VF on
# one of them counts as in use.


# ASCII digits only: str.isdigit() also accepts superscripts and other scripts' digits, which int() refuses.
DIGITS = re.compile(r"^[0-9]+$")


def _number(value) -> bool:
    return not isinstance(value, bool) and bool(DIGITS.match(str(value).strip()))


def derived_mac(pf_mac: str, index: int) -> str:
    """A stable, locally administered unicast MAC for VF `index`: 02, the PF's last three bytes, the
    index in two bytes - the same at every boot, unique per PF port and VF (index below 65536)."""
    tail = pf_mac.lower().split(":")[3:]
    return ":".join(["02"] + tail + ["%02x" % (index >> 8), "%02x" % (index & 0xFF)])


def _is_unicast(mac: str) -> bool:
    return not int(mac.split(":", maxsplit=1)[0], 16) & 1 and mac != "00:00:00:00:00:00"


class SriovPlanner:
    """Builds the per-PF plan; collects every problem instead of stopping at the first."""

    def __init__(self, facts: dict, selected: set[str]) -> None:
        self.devices = {d["address"]: d for d in facts.get("vfio_pci_devices") or []}
        self.host = facts.get("vfio_host") or {}
        self.selected = selected
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.reasons: list[str] = []
        self.macs: dict[str, str] = {}
        # Every MAC a NIC of the node has now (current and permanent): a VF must not get one of them.
        self.node_macs: dict[str, tuple[str, str]] = {}
        for address, device in sorted(self.devices.items()):
            for netdev in device.get("netdevs") or []:
                for mac in (netdev.get("mac"), netdev.get("permanent_mac")):
                    self._node_mac(mac, address, netdev["name"])
        # A VF on vfio-pci (or with no driver) has no interface: its MAC is only in its PF's VF settings.
        for address, device in sorted(self.devices.items()):
            sriov = device.get("sriov") or {}
            vfs = sriov.get("vfs") or []
            for vf in sriov.get("vf_settings") or []:
                index = vf.get("index")
                self._node_mac(vf.get("mac"), vfs[index] if isinstance(index, int) and index < len(vfs) else address,
                               "VF %s of %s" % (index, address))
        # Bridges, bonds and NICs outside the PCI facts (a USB NIC) last: a bridge that took its port's MAC
        # is named by the port.
        for name, mac in sorted((self.host.get("link_macs") or {}).items()):
            self._node_mac(mac, "a link of this node", name)

    def _node_mac(self, mac, address: str, name: str) -> None:
        if isinstance(mac, str) and MAC.match(mac.lower()) and mac.lower() != "00:00:00:00:00:00":
            self.node_macs.setdefault(mac.lower(), (address, name))

    def plan(self, entries) -> list[dict]:
        if entries in (None, ""):
            return []
        if not isinstance(entries, list):
            self.errors.append("passthrough_sriov: %r is not a list of mappings, for example [{interface: enp1s0, "
                               "vfs: 4}]" % (entries,))
            return []
        pfs, seen = [], {}
        for index, entry in enumerate(entries):
            where = "passthrough_sriov[%d]" % index
            pf = self._pf(where, entry)
            if pf is None:
                continue
            if pf["address"] in seen:
                self.errors.append("%s selects %s, already selected by %s" % (
                    where, pf["address"], seen[pf["address"]]))
                continue
            seen[pf["address"]] = where
            pfs.append(pf)
        return pfs

    # --- the physical function ---------------------------------------------
    def _resolve(self, where: str, entry: dict) -> str | None:
        given = [k for k in PF_SELECTORS if entry.get(k) not in (None, "")]
        unknown = sorted(set(entry) - set(PF_SELECTORS) - set(PF_OPTIONS))
        if unknown:
            self.errors.append("%s: unknown key(s) %s (allowed: %s)" % (
                where, ", ".join(unknown), ", ".join(PF_SELECTORS + PF_OPTIONS)))
            return None
        if len(given) != 1:
            self.errors.append("%s: needs exactly one of %s to name the physical function, got %s" % (
                where, ", ".join(PF_SELECTORS), ", ".join(given) or "none"))
            return None
        key, value = given[0], str(entry[given[0]]).strip()
        label = "%s.%s: %r" % (where, key, entry[key])
        if key == "address":
            match = ADDRESS.match(value.lower())
            address = "%s:%s:%s.%s" % (match.group(1) or "0000", match.group(2), match.group(3),
                                       match.group(4)) if match else None
            found = [address] if address in self.devices else []
            problem = "is not a PCI address (expected 0000:01:00.0)" if not match else "- no such PCI device"
        elif key == "interface":
            found = [a for a, d in self.devices.items() for n in d["netdevs"] if n["name"] == value]
            problem = "- no PCI network function has this interface"
        else:
            wanted = value.lower()
            found = sorted({a for a, d in self.devices.items() for n in d["netdevs"]
                            if wanted in ((n.get("permanent_mac") or "").lower(), (n.get("mac") or "").lower())})
            problem = ("is not a MAC address (expected aa:bb:cc:dd:ee:ff)" if not MAC.match(wanted)
                       else "- no PCI network function has this MAC")
        if len(found) != 1:
            self.errors.append("%s %s" % (label, problem if not found else "matches %s: select by address"
                                          % ", ".join(found)))
            return None
        return found[0]

    def _pf(self, where: str, entry) -> dict | None:
        if not isinstance(entry, dict):
            self.errors.append("%s: %r is not a mapping with one of %s" % (where, entry, ", ".join(PF_SELECTORS)))
            return None
        before = len(self.errors)
        address = self._resolve(where, entry)
        if address is None:
            return None
        device = self.devices[address]
        pci_id = "%s:%s" % (device["vendor"], device["device"])
        sriov = device.get("sriov") or {}
        problems = []
        if entry.get("id") not in (None, "") and str(entry["id"]).strip().lower() != pci_id:
            problems.append("%s.id: %r, but %s is %s - another card is in that slot" % (
                where, entry["id"], address, pci_id))
        if sriov.get("physfn"):
            problems.append("%s: %s is itself a virtual function of %s" % (where, address, sriov["physfn"]))
        elif sriov.get("total_vfs") is None:
            problems.append("%s: %s (%s, %s) does not support SR-IOV - it has no sriov_totalvfs (the card, its "
                            "firmware or its driver %s cannot create VFs)" % (
                                where, address, pci_id, device.get("class_name") or device["class"],
                                device.get("driver")))
        if address in self.selected:
            problems.append("%s: %s is also in passthrough_devices - a physical function with VFs stays on the host; "
                            "pass its VFs instead" % (where, address))
        if device.get("driver") == "vfio-pci":
            problems.append("%s: %s is on vfio-pci (passed through whole, perhaps to a running VM) - its VFs need "
                            "its host driver; give the PF back to its driver first" % (where, address))
        elif not device.get("driver") and sriov.get("total_vfs") is not None:
            # The kernel refuses sriov_numvfs on a device without a driver (ENOENT): the run would fail after the
            # files, and the unit at every boot.
            problems.append("%s: %s has no driver loaded (%s) - the kernel makes VFs only through the PF's driver; "
                            "load it (a blacklist? firmware?) first" % (
                                where, address, ", ".join(device.get("modules") or []) or "no candidate module"))
        if not problems and sriov.get("num_vfs") is None:
            # Fail closed: an unknown count is not 0 - a change would destroy VFs nobody checked.
            problems.append("%s: the VF count of %s cannot be read (sriov_numvfs) - nothing is changed on it" % (
                where, address))
        vfs = self._count(where, entry.get("vfs"), sriov.get("total_vfs"), address)
        driver = entry.get("vf_driver") or "none"
        if driver not in VF_DRIVERS:
            problems.append("%s.vf_driver: %r is not one of %s" % (where, driver, ", ".join(VF_DRIVERS)))
        elif driver == "vfio-pci" and vfs and not self.host.get("iommu_active"):
            problems.append("%s.vf_driver: vfio-pci, but the IOMMU is not active - VFs cannot go to VMs; enable "
                            "VT-d/AMD-Vi first" % where)
        macs = entry.get("vf_macs") or "derive"
        if macs not in ("derive", "keep"):
            problems.append("%s.vf_macs: %r is not one of derive, keep" % (where, macs))
        self.errors += problems
        if problems or vfs is None:
            return None
        netdevs = device.get("netdevs") or []
        interface = netdevs[0]["name"] if netdevs else None
        pf_mac = (netdevs[0].get("permanent_mac") or netdevs[0].get("mac")) if netdevs else None
        current = sriov.get("num_vfs") or 0
        settings = self._settings(where, entry.get("vf"), vfs, macs, pf_mac, address, current != vfs)
        plan = {"address": address, "id": pci_id, "interface": interface, "total_vfs": sriov["total_vfs"],
                "vfs": vfs, "current_vfs": current, "vf_driver": driver, "settings": settings,
                "count_changes": current != vfs, "selected_by": where}
        self._sysfs_conf(plan, device)
        self._guards(plan, device)
        return plan if len(self.errors) == before else None

    def _sysfs_conf(self, plan: dict, device: dict) -> None:
        """sysfsutils writes its sriov_numvfs lines at every boot: with the role's unit as well, two tools set
        the PF's count and the last one wins (or fails with EBUSY). Refused before any write."""
        names = {n["name"] for n in device.get("netdevs") or []}
        for line in self.host.get("sysfs_conf_numvfs") or []:
            if sets_count_of(line, plan["address"], names):
                self.errors.append("%s: %s:%s sets the VF count of %s at every boot (sysfsutils: %s = %s) - two tools "
                                   "would set it; remove that line, or this entry" % (
                                       plan["selected_by"], line["file"], line["line"], plan["address"],
                                       line["attribute"], line["value"]))
        for line in self.host.get("boot_numvfs") or []:
            named = bool(line["addresses"] or line["interfaces"])
            if plan["address"] in line["addresses"] or names & set(line["interfaces"]) or not named:
                self.errors.append("%s: %s:%d %r %s the VF count of %s at boot - two tools would set it (the last "
                                   "write wins, or fails while VFs exist); remove that line, or this entry" % (
                                       plan["selected_by"], line["file"], line["line"], line["text"],
                                       "sets" if named else "names no PF, so it may set", plan["address"]))
        if self.host.get("boot_numvfs_error"):
            self.errors.append("%s: whether ifupdown or udev also set the VF count of %s at boot cannot be known "
                               "(%s) - nothing is changed on it" % (plan["selected_by"], plan["address"],
                                                                    self.host["boot_numvfs_error"]))
        if self.host.get("sysfs_conf_error"):
            self.errors.append("%s: whether sysfsutils also sets the VF count of %s at boot cannot be known (%s) - "
                               "nothing is changed on it" % (plan["selected_by"], plan["address"],
                                                             self.host["sysfs_conf_error"]))

    def _count(self, where: str, value, total, address: str) -> int | None:
        if not _number(value):
            self.errors.append("%s.vfs: %r is not a number of VFs (0 to disable)" % (where, value))
            return None
        count = int(str(value).strip())
        if total is not None and count > total:
            self.errors.append("%s.vfs: %d is more than the %d VFs %s supports (sriov_totalvfs)" % (
                where, count, total, address))
            return None
        return count

    # --- each virtual function ---------------------------------------------
    def _settings(self, where: str, raw, vfs: int, macs: str, pf_mac: str | None, pf: str = "",
                  recreated: bool = True) -> list[dict]:
        given: dict[int, dict] = {}
        labels: dict[int, str] = {}
        if raw not in (None, ""):
            if not isinstance(raw, list):
                self.errors.append("%s.vf: %r is not a list of per-VF settings, for example [{index: 0, vlan: 10}]"
                                   % (where, raw))
                raw = []
            for number, item in enumerate(raw):
                label = "%s.vf[%d]" % (where, number)
                vf = self._vf(label, item, vfs)
                if vf is None:
                    continue
                if vf["index"] in given:
                    self.errors.append("%s: index %d is already set by an earlier item" % (label, vf["index"]))
                    continue
                given[vf["index"]] = vf
                labels[vf["index"]] = "%s.mac: %r" % (label, item.get("mac"))
        # The VFs this PF has now, in index order (a VF's routing ID grows with its index). A count change
        # destroys them all, so their MACs are free then; otherwise VF N may keep the MAC it has.
        own = [] if recreated else (self.devices.get(pf, {}).get("sriov") or {}).get("vfs") or []
        settings = []
        for index in range(vfs):
            vf = given.get(index, {"index": index})
            if vf.get("mac") is None and macs == "derive":
                if not pf_mac or not MAC.match(pf_mac.lower()):
                    self.errors.append("%s.vf_macs: derive, but the physical function has no MAC to derive from - "
                                       "give each VF a mac, or set vf_macs: keep" % where)
                    return []
                vf = dict(vf, mac=derived_mac(pf_mac, index))
            if vf.get("mac") and self.host.get("link_macs") is None:
                # Fail closed: a bridge or bond may already have this MAC, and nothing could say so.
                self.errors.append("%s: VF %d would get MAC %s, but the MACs of the node's links are unknown (%s) - "
                                   "it could be a bridge's or a bond's" % (
                                       where, index, vf["mac"], self.host.get("link_macs_error") or "not reported"))
                return []
            if vf.get("mac"):
                holder = self.node_macs.get(vf["mac"])
                if holder and holder[0] in (self.devices.get(pf, {}).get("sriov") or {}).get("vfs", []) and (
                        recreated or (index < len(own) and own[index] == holder[0])):
                    holder = None  # this very VF has it now, or the VFs are made anew
                if holder:
                    self.errors.append("%s is already the MAC of %s (%s) on this node - two NICs with one MAC "
                                       "break the network" % (
                                           labels.get(index, "%s.vf_macs: derive gives VF %d %s" % (
                                               where, index, vf["mac"])), holder[1], holder[0]))
                other = self.macs.get(vf["mac"])
                if other:
                    self.errors.append("%s: VF %d would get MAC %s, already given to %s" % (
                        where, index, vf["mac"], other))
                self.macs[vf["mac"]] = "%s VF %d" % (where, index)
            settings.append(vf)
        return settings

    def _vf(self, label: str, item, vfs: int) -> dict | None:
        if not isinstance(item, dict):
            self.errors.append("%s: %r is not a mapping" % (label, item))
            return None
        unknown = sorted(set(item) - set(VF_KEYS))
        if unknown:
            self.errors.append("%s: unknown key(s) %s (allowed: %s)" % (label, ", ".join(unknown), ", ".join(VF_KEYS)))
            return None
        index = item.get("index")
        if not _number(index) or int(str(index).strip()) >= vfs:
            self.errors.append("%s.index: %r is not a VF index below vfs (%d)" % (label, index, vfs))
            return None
        vf = {"index": int(str(index).strip())}
        problems = []
        if item.get("mac") not in (None, ""):
            mac = str(item["mac"]).strip().lower()
            if not MAC.match(mac) or not _is_unicast(mac):
                problems.append("%s.mac: %r is not a unicast MAC address (aa:bb:cc:dd:ee:ff, not all zero, lowest "
                                "bit of the first byte clear)" % (label, item["mac"]))
            vf["mac"] = mac
        if item.get("vlan") not in (None, ""):
            vlan = item["vlan"]
            if not _number(vlan) or int(str(vlan).strip()) > 4094:
                problems.append("%s.vlan: %r is not a VLAN ID (1 to 4094, 0 for none)" % (label, vlan))
            else:
                vf["vlan"] = int(str(vlan).strip())
        for key in ("trust", "spoofchk"):
            if item.get(key) not in (None, ""):
                value, problem = boolean(item[key])
                if problem:
                    problems.append("%s.%s: %s" % (label, key, problem))
                else:
                    vf[key] = bool(value)
        if item.get("state") not in (None, ""):
            if item["state"] not in LINK_STATES:
                problems.append("%s.state: %r is not one of %s" % (label, item["state"], ", ".join(LINK_STATES)))
            else:
                vf["state"] = item["state"]
        self.errors += problems
        return None if problems else vf

    # --- what the node must not lose -------------------------------------
    def _guards(self, plan: dict, device: dict) -> None:
        """A count change destroys every VF of the PF: refused while one is in use. The PF's own
        management path stays (its link is brought up, its addresses are never touched)."""
        where = plan["selected_by"]
        shared = sorted(vf["address"] for vf in self._vfs_of(plan["address"])
                        if device.get("iommu_group") is not None and vf.get("iommu_group") == device["iommu_group"])
        if plan["vf_driver"] == "vfio-pci" and shared:
            self.warnings.append("%s: the VFs of %s (%s) share its IOMMU group %s (no ACS above it), and the PF stays "
                                 "on its host driver to carry them - the group is never viable, so no VM can start "
                                 "with one of them" % (where, plan["address"], ", ".join(shared),
                                                       device["iommu_group"]))
        if any(n.get("management") for n in device.get("netdevs") or []):
            self.reasons.append("%s: %s carries the management path - it keeps its link and addresses; only VFs "
                                "are added" % (where, plan["address"]))
            if plan["count_changes"]:
                self.warnings.append("%s: changing the VF count of %s, which carries the management path - some "
                                     "drivers reset the port for a moment while VFs are created" % (
                                         where, plan["address"]))
        if plan["count_changes"]:
            self._corosync(plan, device)
        if not plan["count_changes"]:
            self._moves(plan)
            self._setting_changes(plan, device)
            return
        busy = self.busy_vfs(plan["address"])
        if busy:
            self.errors.append("%s: changing the VF count of %s from %d to %d destroys every VF, and %s - stop that "
                               "VM or move that address first" % (where, plan["address"], plan["current_vfs"],
                                                                  plan["vfs"], "; ".join(busy)))
        named = self.configured_users(plan["address"], plan["vfs"])
        if named:
            self.errors.append("%s: a count of %d for %s removes VFs that %s - that VM could not start again; change "
                               "its hostpci (or the mapping) first" % (where, plan["vfs"], plan["address"],
                                                                       "; ".join(named)))

    def _corosync(self, plan: dict, device: dict) -> None:
        """A count change resets the PF's link on many drivers (ixgbe, i40e): a corosync link on it drops for a
        moment - the node may lose the cluster, and HA may fence it. Said loudly; there is no opt-in to refuse."""
        where, address = plan["selected_by"], plan["address"]
        held = [a["address"] for n in device.get("netdevs") or [] for a in n.get("addresses") or []]
        rings = self.host.get("corosync_addresses") or []
        carried = sorted({ring for ring in rings for mine in held if _same_ip(ring, mine)})
        if carried:
            self.warnings.append("%s: changing the VF count of %s (%s) resets its link on many drivers (ixgbe, i40e), "
                                 "and it carries corosync link %s - the node may drop out of the cluster for a moment "
                                 "(HA can fence it); change the count in a maintenance window" % (
                                     where, address, plan["interface"], ", ".join(carried)))
        named = [ring for ring in rings if not _is_ip(ring)]
        if held and (self.host.get("corosync_error") or named):
            self.warnings.append("%s: changing the VF count of %s (%s) resets its link on many drivers, and whether it "
                                 "carries a corosync link cannot be known: %s" % (
                                     where, address, plan["interface"], self.host.get("corosync_error") or
                                     "corosync.conf names %s by host name" % ", ".join(named)))

    def _holders(self, vf: dict | None) -> list[str]:
        """Who would notice a VF's settings change: a VM (or another process) holding it, a userspace I/O
        driver, what its interface carries. An undescribed VF is held by what cannot be known."""
        if vf is None:
            return ["its PCI function could not be read - who uses it cannot be known"]
        holders = []
        holder = self._vm_holds(vf)
        if holder:
            holders.append("IOMMU group %s is %s" % (vf.get("iommu_group"), holder))
        if vf.get("driver") in UIO_DRIVERS:
            holders.append(_uio(vf))
        if _hidden_interface(vf):
            holders.append(_hidden_interface(vf))
        for netdev in vf.get("netdevs") or []:
            held = self._held(netdev)
            if held:
                holders.append("%s carries %s" % (netdev["name"], held))
        return holders

    def _setting_changes(self, plan: dict, device: dict) -> None:
        """The same count: each VF keeps running, and `ip link set PF vf N mac|vlan|trust|spoofchk|state` changes
        it live - under a running VM that cuts the guest's network, on the management path the operator's
        connection. Refused for a VF in use unless the setting is already what it has; a setting that cannot
        be read counts as a change."""
        sriov = device.get("sriov") or {}
        now = sriov.get("vf_settings")
        current = {s.get("index"): s for s in now or []} if now is not None else None
        own = sriov.get("vfs") or []
        described = {vf["address"]: vf for vf in self._vfs_of(plan["address"])}
        for setting in plan["settings"]:
            index = setting["index"]
            have = (current or {}).get(index, {})
            args = vf_arguments(setting, have)
            address = own[index] if index < len(own) else None
            holders = self._holders(described.get(address)) if args else []
            if not holders:
                continue
            changes = ", ".join("%s %s (now %s)" % (key, value, _shown(have.get(key)))
                                for key, value in zip(args[::2], args[1::2]))
            unknown = "" if current is not None else " - its current settings cannot be read (%s)" % (
                sriov.get("vf_settings_error") or "pci_facts did not report them")
            self.errors.append("%s: VF %d (%s) of %s would be set live to %s%s, and %s - changing it under a running "
                               "VM cuts the guest's network, on the management path the connection; stop that VM or "
                               "move that address first, or give the VF the settings it has (vf_macs: keep)" % (
                                   plan["selected_by"], index, address or "not described", plan["address"], changes,
                                   unknown, "; ".join(holders)))

    def busy_vfs(self, address: str) -> list[str]:
        """What destroying the PF's VFs would take: a VF a VM holds (or may hold), a VF whose interface
        carries an address, a bridge or the management path. Every VF the facts show counts, whatever
        sriov_numvfs said."""
        described = {vf["address"] for vf in self._vfs_of(address)}
        pf = self.devices.get(address) or {}
        busy = ["%s is a VF of %s that discovery could not read - who uses it cannot be known" % (vf, address)
                for vf in (pf.get("sriov") or {}).get("vfs") or [] if vf not in described]
        for vf in self._vfs_of(address):
            holder = self._vm_holds(vf)
            if holder:
                busy.append("%s is on vfio-pci and IOMMU group %s is %s" % (vf["address"], vf["iommu_group"], holder))
            if vf.get("driver") in UIO_DRIVERS:
                busy.append("%s %s" % (vf["address"], _uio(vf)))
            if _hidden_interface(vf):
                busy.append("%s %s" % (vf["address"], _hidden_interface(vf)))
            for netdev in vf.get("netdevs") or []:
                held = self._held(netdev)
                if held:
                    busy.append("%s (%s) carries %s" % (vf["address"], netdev["name"], held))
        return busy

    def configured_users(self, address: str, keep: int) -> list[str]:
        """Who names a VF that a count of `keep` removes: a VM's hostpciN - a stopped VM too, it needs the VF at its
        next start -, this node's entry of a PCI mapping, or a container that takes the VF's interface. Fail
        closed: when the configurations could not be read, that is said instead."""
        vfs = ((self.devices.get(address) or {}).get("sriov") or {}).get("vfs") or []
        gone = vfs[keep:]
        if not gone:
            return []
        known = self.host.get("vm_pci", {})
        if known is None:
            return ["whether a VM or a PCI mapping names one of them (%s) cannot be known: %s" % (
                ", ".join(gone), self.host.get("vm_pci_error") or "pci_facts did not read the configurations")]
        found = []
        for vmid, references in sorted((known.get("vms") or {}).items(), key=lambda item: int(item[0])):
            for ref in references:
                hit = [vf for vf in gone if any(overlaps(i, vf) for i in ref["ids"])] or \
                    [vf for vf in gone if ref["mapping"] and any(
                        overlaps(i, vf) for i in (known.get("mappings") or {}).get(ref["mapping"], []))]
                if hit:
                    pending = " (pending)" if ref["pending"] else ""
                    found.append("VM %s names %s in %s%s (%s)" % (vmid, ", ".join(hit), ref["option"], pending,
                                                                  ref["value"]))
        for mapping, paths in sorted((known.get("mappings") or {}).items()):
            hit = [vf for vf in gone if any(overlaps(i, vf) for i in paths)]
            if hit:
                found.append("PCI mapping %s maps %s on this node" % (mapping, ", ".join(hit)))
        interfaces = {n["name"]: vf for vf in gone for n in (self.devices.get(vf) or {}).get("netdevs") or []}
        for ctid, links in sorted((known.get("cts") or {}).items(), key=lambda item: int(item[0])):
            hit = ["%s (%s)" % (link, interfaces[link]) for link in links if link in interfaces]
            if hit:
                found.append("container %s takes %s (lxc.net phys)" % (ctid, ", ".join(hit)))
        return found

    def in_place(self, pf: dict) -> bool:
        """Whether the PF already has what the plan asks - the count, every VF on the wanted side, every setting
        read back equal - so a converged run does not call sriov_vfs. Anything not known is not in place."""
        sriov = (self.devices.get(pf["address"]) or {}).get("sriov") or {}
        vfs = self._vfs_of(pf["address"])
        if sriov.get("num_vfs") != pf["vfs"] or len(vfs) != pf["vfs"] or len(sriov.get("vfs") or []) != pf["vfs"]:
            return False
        for vf in vfs:
            on_vfio, driver = vf.get("driver") == "vfio-pci", vf.get("driver")
            if (pf["vf_driver"] == "vfio-pci" and not on_vfio) or (pf["vf_driver"] == "host" and (
                    on_vfio or driver is None)) or (pf["vf_driver"] == "none" and driver and not on_vfio):
                return False
        now = sriov.get("vf_settings")
        if now is None:
            return not pf["settings"]
        current = {s.get("index"): s for s in now}
        return not any(vf_arguments(s, current.get(s["index"], {})) for s in pf["settings"])

    def _vfs_of(self, address: str) -> list[dict]:
        return sorted((d for d in self.devices.values() if (d.get("sriov") or {}).get("physfn") == address),
                      key=lambda d: d["address"])

    def _vm_holds(self, vf: dict) -> str:
        """Who holds a VF on vfio-pci ('' for nobody). Fail closed: when /proc could not be read, that is
        what holds it."""
        if vf.get("driver") != "vfio-pci":
            return ""
        users = self.host.get("vfio_users", {})
        if users is None:
            return "perhaps in use - who holds it cannot be known: %s" % (
                self.host.get("vfio_users_error") or "pci_facts did not read /proc")
        held = users.get(vf.get("iommu_group"))
        return "in use by %s" % ", ".join(held) if held else ""

    def _held(self, netdev: dict) -> str:
        """What a VF's host interface carries that taking it from its driver would cut ('' for nothing).
        Fail closed: when the network could not be read, that is what it carries."""
        held = [a["address"] for a in netdev.get("addresses") or [] if a.get("scope", "global") == "global"]
        held += list(netdev.get("uppers") or [])
        if held:
            return ", ".join(held)
        if netdev.get("management"):
            return "the management path (%s)" % "; ".join(netdev.get("management_reasons") or []) \
                if netdev.get("management_reasons") else "the management path"
        unknown = netdev.get("management_unknown") or self.host.get("network_error")
        if unknown:
            return "what cannot be known: addresses and routes could not be read (%s)" % unknown \
                if not netdev.get("management_unknown") else "what cannot be known: %s" % unknown
        return ""

    def _moves(self, plan: dict) -> None:
        """The same count, another vf_driver: the VFs move now (sriov_vfs), so the guards run here too -
        off a host driver (vfio-pci, none) cuts what its interface carries; off vfio-pci (host) takes the VF
        from a VM that holds it."""
        where, target = plan["selected_by"], plan["vf_driver"]
        cut, taken, moved = [], [], []
        for vf in self._vfs_of(plan["address"]):
            driver = vf.get("driver")
            if target in ("vfio-pci", "none") and driver not in (None, "vfio-pci"):
                moved.append(vf["address"])
                if driver in UIO_DRIVERS:
                    cut.append("%s %s" % (vf["address"], _uio(vf)))
                for netdev in vf.get("netdevs") or []:
                    held = self._held(netdev)
                    if held:
                        cut.append("%s (%s, %s) carries %s" % (vf["address"], netdev["name"], driver, held))
            elif target == "host" and driver == "vfio-pci":
                moved.append(vf["address"])
                holder = self._vm_holds(vf)
                if holder:
                    taken.append("%s is %s (IOMMU group %s)" % (vf["address"], holder, vf["iommu_group"]))
        if cut:
            self.errors.append("%s.vf_driver: %r takes VFs of %s off their host driver now, and %s - move that "
                               "first, or keep vf_driver: host" % (where, target, plan["address"], "; ".join(cut)))
        if taken:
            self.errors.append("%s.vf_driver: %r takes VFs of %s from vfio-pci now, and %s - stop that VM first" % (
                where, target, plan["address"], "; ".join(taken)))
        if moved and not cut and not taken:
            self.reasons.append("%s: %s go %s now" % (
                where, ", ".join(moved), "from vfio-pci to the host's VF driver" if target == "host"
                else "to vfio-pci" if target == "vfio-pci" else "off their host driver"))


def _hidden_interface(vf: dict) -> str | None:
    """A VF a host network driver drives whose interface the host does not show: moved into a container's network
    namespace (lxc.net.N.type: phys) - its user cannot be known from the host, so it counts as in use."""
    if vf.get("is_network") and not vf.get("netdevs") and vf.get("driver") not in (None, "vfio-pci") + UIO_DRIVERS:
        return "is driven by %s but has no interface on the host (given to a container?) - who uses it cannot " \
               "be known" % vf["driver"]
    return None


def _uio(vf: dict) -> str:
    return ("is on %s, a userspace I/O driver (DPDK and the like) - the process holding its /dev/uio device cannot "
            "be known, so it counts as in use" % vf.get("driver"))


def _without_zone(text: str) -> str:
    return str(text).split("%", maxsplit=1)[0]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(_without_zone(text))
    except ValueError:
        return False
    return True


def _same_ip(one: str, other: str) -> bool:
    return _is_ip(one) and _is_ip(other) and \
        ipaddress.ip_address(_without_zone(one)) == ipaddress.ip_address(_without_zone(other))


def _shown(value) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def recorded_pfs(text: str | None) -> list[dict]:
    """The PFs the boot configuration (/etc/vfio-proxmox/sriov.conf) names: {address, id, vfs}, each
    once (a PF named twice, by a hand edit, is its first line)."""
    found: dict[str, dict] = {}
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) >= 4 and words[0] == "pf" and DIGITS.match(words[3]) and words[1] not in found:
            found[words[1]] = {"address": words[1], "id": words[2], "vfs": int(words[3])}
    return list(found.values())


def _module_args(pf: dict) -> dict:
    """What vfio.proxmox.sriov_vfs takes for one PF."""
    return {"address": pf["address"], "id": pf["id"], "vfs": pf["vfs"], "vf_driver": pf["vf_driver"],
            "settings": pf["settings"]}


def sriov_plan(facts: dict, entries, selected: set[str] | None = None, state: str = "present",
               record: str | None = None, recorded: list | None = None) -> dict:
    """{pfs, apply, boot, errors, warnings, reasons} for passthrough_sriov.

    apply: sriov_vfs' `pfs` - the planned PFs not already as planned (in_place), and with 0 VFs every PF the
    boot configuration (`record`) names that is no longer planned (state absent: all of them). pfs[].boot: each VF's
    `ip link set PF vf N` arguments for the boot script.
    """
    planner = SriovPlanner(facts, selected or set())
    pfs = planner.plan(entries) if state == "present" else []
    if state not in ("present", "absent"):
        planner.errors.append("passthrough_state: %r is not one of present, absent" % (state,))
    for pf in pfs:
        pf["boot"] = [{"index": s["index"], "args": vf_arguments(s, {})} for s in pf["settings"]
                      if vf_arguments(s, {})]
    planned = {pf["address"] for pf in pfs}
    released = []
    known = {}
    # The role's record (state.json's sriov section) first, then the boot configuration (older runs wrote
    # only that): a PF either names is released when it is no longer planned.
    for old in [r for r in recorded or [] if isinstance(r, dict) and r.get("address") and r.get("id")] + \
            recorded_pfs(record):
        known.setdefault(str(old["address"]), {"address": str(old["address"]), "id": str(old["id"])})
    for old in known.values():
        if old["address"] in planned:
            continue
        device = planner.devices.get(old["address"])
        now = "%s:%s" % (device["vendor"], device["device"]) if device else None
        # A card that is gone took its VFs with it; another card in the slot is not ours to touch. Either way
        # the boot configuration drops it, so cleanup converges and the unit stops failing at boot.
        if device is None:
            planner.warnings.append("%s (%s) is in %s but no longer on the node: its VFs went with the card; "
                                    "dropped from the boot configuration" % (old["address"], old["id"], SRIOV_CONF))
        elif now != old["id"]:
            planner.warnings.append("%s was %s in %s and is %s now - another card is in that slot and is not "
                                    "touched; dropped from the boot configuration" % (
                                        old["address"], old["id"], SRIOV_CONF, now))
        else:
            # Removing the VFs is a count change to 0: the same guards (a VM's VF, the management path, a VM
            # configuration or a mapping that names a VF).
            cause = "passthrough_state: absent: the rollback" if state == "absent" else \
                "no longer in passthrough_sriov: this run"
            for found, advice in ((planner.busy_vfs(old["address"]), "stop that VM or move that address first"),
                                  (planner.configured_users(old["address"], 0),
                                   "that VM could not start again; change its hostpci (or the mapping) first")):
                if found:
                    planner.errors.append("%s removes every VF of %s, and %s - %s; nothing was changed" % (
                        cause, old["address"], "; ".join(found), advice))
            released.append({"address": old["address"], "id": old["id"], "vfs": 0, "vf_driver": "none",
                             "settings": []})
            planner.reasons.append("%s: no longer in passthrough_sriov - its VFs are removed" % old["address"])
    # A PF already as planned is left out: a converged run does not go to the node for it (sriov_vfs).
    apply = [_module_args(pf) for pf in pfs if not planner.in_place(pf)]
    return {"pfs": pfs, "apply": apply + released, "errors": planner.errors,
            "warnings": planner.warnings, "reasons": planner.reasons}


def watched_paths() -> dict[str, list[str]]:
    """What the feature must see on the node (paths) and read (read) before it can decide."""
    paths = [f[0] for f in SRIOV_FILES] + [SRIOV_WANTS]
    return {"paths": paths + sorted({p.rsplit("/", 1)[0] for p in paths}), "read": [SRIOV_CONF]}


def fragment(facts: dict, entries, selected: set[str], state: str, seen: dict, recorded: list | None = None) -> dict:
    """The SR-IOV feature's part of the composed plan (see plan/_compose.py).

    sriov_plan() plus what the role moves: `files` (rows of the owned-file table, template None =
    remove it when it exists), `dirs`, `unit` (enable/disable: booleans the YAML tests), `live`
    (sriov_vfs has PFs to apply), `involved` (the feature asks for something or left something on the
    node), `record` (its section of state.json, None when it wants nothing). A PF is known from that
    section and from the boot configuration, sriov.conf (all that older runs recorded).
    """
    def exists(path: str) -> bool:
        return bool((seen.get(path) or {}).get("exists"))

    entry = seen.get(SRIOV_CONF) or {}
    record = entry.get("content") if entry.get("exists") else None
    plan = sriov_plan(facts, entries, selected, state, record, recorded)
    wanted = state == "present" and bool(plan["pfs"])
    left = [p for p in [f[0] for f in SRIOV_FILES] + [SRIOV_WANTS] if exists(p)]
    involved = wanted or bool(left) or bool(plan["apply"])
    for path in [f[0] for f in SRIOV_FILES]:
        kind = (seen.get(path) or {}).get("type")
        if exists(path) and kind != "file":
            plan["errors"].append("%s is a %s, not a file: the role owns this path and writes only regular files "
                                  "there - move it away" % (path, kind))
    rows = [{"path": path, "mode": mode, "template": template if wanted else None, "rebuild": None,
             "backup": None} for path, mode, template in SRIOV_FILES] if involved else []
    if not wanted and exists(SRIOV_WANTS) and not exists(SRIOV_UNIT):
        # A link left without its unit file (removed by hand): systemctl cannot disable it, so it is removed.
        rows.append({"path": SRIOV_WANTS, "mode": "0777", "template": None, "rebuild": None, "backup": None})
    plan.update(
        involved=involved,
        files=rows,
        dirs=sorted({f[0].rsplit("/", 1)[0] for f in SRIOV_FILES}) if wanted else [],
        unit={"name": SRIOV_UNIT_NAME, "path": SRIOV_UNIT,
              "enable": wanted and not exists(SRIOV_WANTS),
              # systemctl disable needs the unit file; without it only the link is left, and it goes with it.
              "disable": not wanted and exists(SRIOV_WANTS) and exists(SRIOV_UNIT)},
        live=bool(plan["apply"]),
        # The feature's section of the role's record (state.json).
        record=[{"address": pf["address"], "id": pf["id"], "vfs": pf["vfs"], "vf_driver": pf["vf_driver"]}
                for pf in plan["pfs"]] if wanted else None)
    return plan
