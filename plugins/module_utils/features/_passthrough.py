# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The passthrough role's decisions, from pci_facts results and the role's inputs.

Pure functions: selection, every preflight refusal and every configuration
decision (command line tokens, modules, bind method, softdeps) live here so
the role's YAML only moves data and Jinja holds no logic.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._grub_overrides import sources_after_dropin
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._handmade import blacklisted
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._host import corosync_addresses, kernel_version
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import (
    id_spec,
    normalize_module,
    param_key,
    spec_matches,
    spec_text,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    ADOPT_MANIFEST,
    GRUB_DROPIN,
    INITRAMFS_MODULES,
    KERNEL_CMDLINE,
    MODPROBE,
    MODULES_LOAD,
    read_manifest,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.features._adopt import (
    Adoption,
    copy_dirs,
    give_back,
    hand_made_ids,
    writes,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import (
    cmdline_record,
    desired,
    read_record,
    satisfied,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._inputs import boolean, cmdline_token, module_name
from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox._configid import CONFIGID_RE

ADDRESS = re.compile(r"^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")
MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")
PCI_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
CLASS = re.compile(r"^(?:0x)?([0-9a-f]{2,6})$")
SELECTOR_KEYS = ("address", "interface", "mac", "id")
OPTION_KEYS = ("class", "force", "allow_group", "mapping", "vm")
BASE_MODULES = ["vfio", "vfio_iommu_type1", "vfio_pci"]
# Configuration lines in these files are the role's own (the initramfs list: its marked block).
OWNED_PATHS = (MODPROBE, MODULES_LOAD, "/etc/initramfs-tools/modules")
# Kernel parameters the role decides itself: passthrough_extra_cmdline may not set them.
MANAGED_KEYS = ("intel_iommu", "iommu")


def _stack_reasons(netdev: dict, corosync: set[str]) -> list[str]:
    """Why an interface (with everything stacked on it) is a management path."""
    reasons = list(netdev.get("management_reasons", []))
    for addr in netdev.get("addresses", []):
        if addr.get("scope", "global") in ("link", "host"):
            continue
        where = addr["interface"]
        reasons.append("%s holds %s/%s" % (where, addr["address"], addr["prefixlen"]))
        try:
            if any(ipaddress.ip_address(addr["address"]) == ipaddress.ip_address(c) for c in corosync
                   if _is_ip(c)):
                reasons.append("%s carries corosync link %s" % (where, addr["address"]))
        except ValueError:
            continue
    return sorted(set(reasons))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def management_reasons(device: dict, corosync: set[str]) -> list[str]:
    return sorted({"%s: %s" % (n["name"], r) for n in device.get("netdevs", []) for r in _stack_reasons(n, corosync)})


class Planner:
    """Builds the plan; collects every problem instead of stopping at the first."""

    def __init__(self, facts: dict, inputs: dict, seen: dict, corosync_conf: str | None = None) -> None:
        self.devices = {d["address"]: d for d in facts.get("vfio_pci_devices", [])}
        self.groups = facts.get("vfio_iommu_groups", {})
        self.host = facts.get("vfio_host", {})
        self.inputs = inputs
        # The addresses pci_facts read from /etc/pve/corosync.conf, unless the caller passes the file's text.
        self.corosync = set(corosync_addresses(corosync_conf) if corosync_conf is not None
                            else self.host.get("corosync_addresses") or [])
        self.seen = seen
        self.record = read_record(seen)[0].get("selectors") or {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.reasons: list[str] = []
        self.labels: dict[int, str] = {}
        self.adoption: Adoption | None = None
        self.manifest: dict = {"files": {}, "targets": [], "lines": [], "selection": []}
        self.selection: list[dict] = []

    def where(self, index: int) -> str:
        """How an item is named in messages: passthrough_devices[N], or the hand-made line it came from."""
        return self.labels.get(index) or "passthrough_devices[%d]" % index

    # --- selection -------------------------------------------------------
    def _resolve(self, index: int, entry) -> list[str]:
        where = self.where(index)
        if not isinstance(entry, dict):
            self.errors.append("%s: %r is not a mapping with one of %s" % (where, entry, ", ".join(SELECTOR_KEYS)))
            return []
        unknown = sorted(set(entry) - set(SELECTOR_KEYS) - set(OPTION_KEYS))
        given = [k for k in SELECTOR_KEYS if entry.get(k) not in (None, "")]
        if unknown:
            self.errors.append("%s: unknown key(s) %s (allowed: %s)" % (
                where, ", ".join(unknown), ", ".join(SELECTOR_KEYS + OPTION_KEYS)))
        elif len(given) != 1:
            self.errors.append("%s: needs exactly one of %s, got %s" % (
                where, ", ".join(SELECTOR_KEYS), ", ".join(given) or "none"))
        elif "class" in entry and given[0] != "id":
            self.errors.append("%s.class: only allowed with id, not with %s" % (where, given[0]))
        else:
            key = given[0]
            label = "%s.%s: %r" % (where, key, entry[key])
            finder = {"address": self._by_address, "mac": self._by_mac,
                      "interface": self._by_interface, "id": self._by_id}[key]
            return finder(label, str(entry[key]).strip(), entry, where)
        return []

    def _by_address(self, label: str, value: str, entry: dict, where: str) -> list[str]:
        match = ADDRESS.match(value.lower())
        if not match:
            self.errors.append("%s is not a PCI address (expected 0000:02:00.0)" % label)
            return []
        address = "%s:%s:%s.%s" % (match.group(1) or "0000", match.group(2), match.group(3), match.group(4))
        if address not in self.devices:
            self.errors.append("%s - no such PCI device on this node" % label)
            return []
        return [address]

    def _by_mac(self, label: str, value: str, entry: dict, where: str) -> list[str]:
        if not MAC.match(value.lower()):
            self.errors.append("%s is not a MAC address (expected aa:bb:cc:dd:ee:ff)" % label)
            return []
        wanted = value.lower()
        # Bond slaves share the bond's MAC: the permanent address tells them apart.
        found = sorted({a for a, d in self.devices.items() for n in d["netdevs"]
                        if (n.get("permanent_mac") or "").lower() == wanted})
        found = found or sorted({a for a, d in self.devices.items() for n in d["netdevs"]
                                 if (n.get("mac") or "").lower() == wanted})
        found = found or self._from_record("mac:" + wanted)
        if not found:
            self.errors.append("%s - no PCI network function has this MAC" % label)
        elif len(found) > 1:
            self.errors.append("%s is ambiguous - %s all carry it (bond slaves share the bond's MAC); select by "
                               "address or interface" % (label, ", ".join(found)))
            return []
        return found

    def _by_interface(self, label: str, value: str, entry: dict, where: str) -> list[str]:
        found = [a for a, d in self.devices.items() for n in d["netdevs"] if n["name"] == value]
        found = found or self._from_record("interface:" + value)
        if not found:
            known = sorted(n["name"] for d in self.devices.values() for n in d["netdevs"])
            self.errors.append("%s - no PCI network function has this interface (known: %s)" % (
                label, ", ".join(known) or "none"))
        return found[:1]

    def _from_record(self, key: str) -> list[str]:
        """A device on vfio-pci has no interface or MAC any more: find it through an earlier run's record.

        Only while the recorded address still holds the recorded vendor:device and is on vfio-pci.
        """
        known = self.record.get(key) or {}
        device = self.devices.get(known.get("address"))
        if not device or "%s:%s" % (device["vendor"], device["device"]) != known.get("id"):
            return []
        if device["driver"] != "vfio-pci":
            return []
        self.reasons.append("%s: %s is on vfio-pci, found through the record of an earlier run" % (
            key, known["address"]))
        return [known["address"]]

    def _by_id(self, label: str, value: str, entry: dict, where: str) -> list[str]:
        if not PCI_ID.match(value.lower()):
            self.errors.append("%s is not a vendor:device ID (expected 8086:15f3)" % label)
            return []
        prefix = ""
        if entry.get("class") not in (None, ""):
            match = CLASS.match(str(entry["class"]).strip().lower())
            if not match:
                self.errors.append("%s.class: %r is not a hex class prefix (expected 02 or 0200)" % (
                    where, entry["class"]))
                return []
            prefix = match.group(1)
        found = sorted(a for a, d in self.devices.items()
                       if "%s:%s" % (d["vendor"], d["device"]) == value.lower()
                       and (d["class"] or "").startswith(prefix))
        if not found:
            self.errors.append("%s%s - no PCI device with this ID on this node" % (
                label, " and class %s" % prefix if prefix else ""))
        return found

    def flag(self, where: str, value, default: bool = False) -> bool:
        """An Ansible boolean; anything else is refused (a truthy "false" must not disarm a guard)."""
        if value is None or value == "":
            return default
        result, problem = boolean(value)
        if problem:
            self.errors.append("%s: %s" % (where, problem))
            return default
        return bool(result)

    def mapping_of(self, index: int, entry: dict) -> tuple[str | None, int | None]:
        """The item's Proxmox mapping name and VM (vfio.proxmox.mappings publishes and attaches them)."""
        where = self.where(index)
        name, vmid = entry.get("mapping"), entry.get("vm")
        if name is not None and (not isinstance(name, str) or not CONFIGID_RE.match(name)):
            self.errors.append("%s.mapping: %r is not a Proxmox mapping ID (a letter, then letters, digits, _ or -)"
                               % (where, name))
            name = None
        if vmid is None:
            return name, None
        # pve-common JSONSchema.pm pve-vmid: 100 to 999999999
        if isinstance(vmid, bool) or not str(vmid).isdigit() or not 100 <= int(vmid) <= 999999999:
            self.errors.append("%s.vm: %r is not a Proxmox VM ID (100 to 999999999)" % (where, vmid))
            return name, None
        if entry.get("mapping") is None:
            self.errors.append("%s.vm: %s needs a mapping - a VM gets the device through one (add mapping: NAME)"
                               % (where, vmid))
        return name, int(vmid)

    def choice(self, where: str, value, choices: tuple, default: str) -> str:
        """One of `choices`; anything else is refused by name (argument_specs checks too, but the filter
        is public and must not read a typo as a default)."""
        if value is None or value == "":
            return default
        if value not in choices:
            self.errors.append("%s: %r is not one of %s" % (where, value, ", ".join(choices)))
            return default
        return value

    def adopted_entries(self, loader: str | None) -> list[dict]:
        """passthrough_adopt without passthrough_devices: the hand-made ids become id: selections (an ids entry
        that names more than vendor:device - subsystem, class - selects the devices it matches by address)."""
        first: dict[str, str] = {}
        # An earlier adoption commented the ids out; its manifest keeps them, so a re-run selects the same.
        for pci_id, where in hand_made_ids(self.host.get("handmade") or [], loader) + [
                (i["id"], i["where"]) for i in self.manifest["selection"]]:
            first.setdefault(pci_id, where)
        entries = []
        for pci_id, where in first.items():
            matched = sorted(a for a, d in self.devices.items() if spec_matches(pci_id, d))
            if not matched:
                self.reasons.append("hand-made ids %s (%s): no device with this ID on this node - not in the plan"
                                    % (pci_id, where))
                continue
            spec = id_spec(pci_id)
            plain = spec is not None and spec_text(spec) == pci_id and pci_id.count(":") == 1
            for selector in [{"id": pci_id}] if plain else [{"address": a} for a in matched]:
                self.labels[len(entries)] = "hand-made ids %s (%s)" % (pci_id, where)
                entries.append(selector)
            self.selection.append({"id": pci_id, "where": where})
        if entries:
            self.reasons.append("passthrough_adopt selected by the hand-made ids - to keep this selection without "
                                "passthrough_adopt, set passthrough_devices: [%s]" % ", ".join(
                                    "{%s: '%s'}" % next(iter(e.items())) for e in entries))
        return entries

    def handmade_targets(self, loader: str | None) -> list[dict]:
        """The devices the hand-made configuration binds at boot: a rollback leaves them on vfio-pci."""
        ids = {i for i, _where in hand_made_ids(self.host.get("handmade") or [], loader)}
        return [{"address": a, "id": "%s:%s" % (d["vendor"], d["device"])} for a, d in sorted(self.devices.items())
                if any(spec_matches(i, d) for i in ids)]

    def select(self, loader: str | None = None) -> list[dict]:
        chosen: dict[str, dict] = {}
        self.new_record: dict[str, dict] = {}
        entries = self.inputs.get("devices") or []
        if self.adoption is not None and not entries:
            entries = self.adopted_entries(loader)
        if not isinstance(entries, list):
            kind = "a string" if isinstance(entries, str) else "a mapping" if isinstance(entries, dict) else "a %s" % (
                type(entries).__name__)
            self.errors.append("passthrough_devices: %r is %s, not a list of mappings - write it as YAML or "
                               "JSON, for example [{interface: enp2s0}]" % (str(entries) if isinstance(entries, str)
                                                                            else entries, kind))
            entries = []
        for index, entry in enumerate(entries):
            addresses = self._resolve(index, entry)
            mapping, vmid = self.mapping_of(index, entry) if addresses else (None, None)
            for key in ("interface", "mac"):
                if isinstance(entry, dict) and entry.get(key) and len(addresses) == 1:
                    device = self.devices[addresses[0]]
                    name = str(entry[key]).strip()
                    self.new_record["%s:%s" % (key, name.lower() if key == "mac" else name)] = {
                        "address": addresses[0], "id": "%s:%s" % (device["vendor"], device["device"])}
            for address in addresses:
                if address in chosen:
                    self.errors.append("%s selects %s, already selected by %s" % (
                        self.where(index), address, chosen[address]["selected_by"]))
                    continue
                device = self.devices[address]
                if device["is_bridge"]:
                    self.errors.append("%s selects %s, a PCI bridge (class %s): bridges are "
                                       "not passed through" % (self.where(index), address, device["class"]))
                    continue
                if device.get("sriov") and device["sriov"].get("num_vfs"):
                    self.errors.append("%s selects %s, an SR-IOV physical function with %d "
                                       "VFs enabled: pass the VFs instead"
                                       % (self.where(index), address, device["sriov"]["num_vfs"]))
                    continue
                chosen[address] = {
                    "address": address,
                    "id": "%s:%s" % (device["vendor"], device["device"]),
                    "driver": device["driver"],
                    "native_driver": device["driver"] if device["driver"] not in (None, "vfio-pci")
                    else (device["modules"][0] if device["modules"] else None),
                    "iommu_group": device["iommu_group"],
                    "interfaces": [n["name"] for n in device["netdevs"]],
                    "selected_by": self.where(index),
                    "force": self.flag(self.where(index) + ".force", entry.get("force")),
                    "allow_group": self.flag(self.where(index) + ".allow_group", entry.get("allow_group")),
                    "class": device["class"],
                    "class_name": device.get("class_name"),
                    "modules": device.get("modules") or [],
                    "storage": device.get("storage") or [],
                }
                chosen[address].update(mapping=mapping, vm=vmid, proxmox_mapping=device.get("proxmox_mapping"))
        return sorted(chosen.values(), key=lambda d: d["address"])

    # --- preflight -------------------------------------------------------
    def check_iommu(self, tokens: list[str]) -> None:
        if self.host.get("iommu_active"):
            return
        # Only a running kernel before 6.8 can be missing intel_iommu=on; from 6.8 on, no groups means
        # VT-d is off in the firmware, whatever an older installed kernel would need.
        running = self.host.get("kernel_release")
        will_enable = ("intel_iommu=on" in tokens and kernel_version(running) < (6, 8)
                       and not satisfied("intel_iommu=on", self.host.get("cmdline", [])))
        if will_enable:
            self.warnings.append("IOMMU not active yet: the role adds intel_iommu=on; verify checks the IOMMU "
                                 "groups after the reboot")
            return
        self.errors.append("IOMMU unavailable: /sys/kernel/iommu_groups is empty on a %s CPU with kernel %s and "
                           "command line %r - enable VT-d/AMD-Vi (IOMMU) in the firmware setup" % (
                               self.host.get("cpu_vendor"), self.host.get("kernel_release"),
                               " ".join(self.host.get("cmdline", []))))

    def describe(self, address: str) -> str:
        """"0000:00:17.0 (SATA controller, holds /)" - what a group message names."""
        device = self.devices.get(address, {})
        parts = [device.get("class_name") or "class %s" % device.get("class")] + list(device.get("storage") or [])
        return "%s (%s)" % (address, ", ".join(parts))

    def check_groups(self, selected: list[dict]) -> None:
        picked = {d["address"] for d in selected}
        for dev in selected:
            if dev["iommu_group"] is None:
                if self.host.get("iommu_active"):
                    self.errors.append("%s (%s): has no IOMMU group although the IOMMU is active - the IOMMU does "
                                       "not cover it, so vfio-pci cannot take it" % (
                                           dev["selected_by"], dev["address"]))
                continue
            others = [a for a in self.groups.get(dev["iommu_group"], [])
                      if a not in picked and a in self.devices and not self.devices[a]["is_bridge"]]
            if others and not dev["allow_group"]:
                # Never suggest selecting what holds the node's storage (check_storage refuses it anyway).
                movable = [a for a in others if not self.devices[a].get("storage")]
                advice = ("select them too or set allow_group: true on this entry" if movable == others else
                          "this group cannot leave the host: %s holds the node's storage" % ", ".join(
                              a for a in others if a not in movable))
                self.errors.append("%s (%s): IOMMU group %s is not isolated - it also holds %s; %s" % (
                    dev["selected_by"], dev["address"], dev["iommu_group"],
                    ", ".join(self.describe(a) for a in others), advice))
            elif others:
                self.warnings.append("%s (%s): allow_group set - %s in IOMMU group %s go with it" % (
                    dev["selected_by"], dev["address"], ", ".join(self.describe(a) for a in others),
                    dev["iommu_group"]))

    def check_storage(self, selected: list[dict]) -> None:
        """The controller of /, swap, LVM, md or a ZFS pool - or a group sibling of it - never leaves the host."""
        problems = self.host.get("storage_problems")
        for dev in selected:
            group = self.groups.get(dev["iommu_group"], []) if dev["iommu_group"] is not None else []
            holders = [a for a in [dev["address"]] + [p for p in group if p != dev["address"]]
                       if a in self.devices and self.devices[a].get("storage")]
            if holders:
                self.errors.append("%s (%s): refusing - %s: the node's storage would go with it" % (
                    dev["selected_by"], dev["address"], "; ".join(
                        ("%s" if a == dev["address"] else "IOMMU group sibling %s") % self.describe(a)
                        for a in holders)))
            elif problems is None or problems:
                why = "; ".join(problems) if problems else "pci_facts did not report storage (older version?)"
                message = "%s (%s): refusing - the node's storage could not be traced to PCI functions: %s" % (
                    dev["selected_by"], dev["address"], why)
                if dev["force"]:
                    self.warnings.append(message.replace("refusing", "FORCED although") + " - force: true was set")
                else:
                    self.errors.append(message + " - set force: true on this entry to override")

    def check_lockout(self, selected: list[dict]) -> None:
        network_error = self.host.get("network_error", "pci_facts did not report whether it read the network")
        for dev in selected:
            reasons = management_reasons(self.devices[dev["address"]], self.corosync)
            group = self.groups.get(dev["iommu_group"], []) if dev["iommu_group"] is not None else []
            for peer in group:
                if peer != dev["address"] and peer in self.devices:
                    reasons += ["IOMMU group sibling %s %s" % (peer, r)
                                for r in management_reasons(self.devices[peer], self.corosync)]
            # Fail closed: a guard that cannot see addresses and routes cannot clear a network function.
            members = [dev["address"]] + [p for p in group if p != dev["address"] and p in self.devices]
            if network_error and any(self.devices[a].get("is_network") or self.devices[a]["netdevs"] for a in members):
                reasons.append("addresses and routes could not be read (%s), so its management paths are "
                               "unknown" % network_error)
            reasons += [n["management_unknown"] for a in members for n in self.devices[a]["netdevs"]
                        if n.get("management_unknown")]
            # Fail closed: a network driver is bound but the host shows no interface - it was moved into another
            # network namespace (a container's uplink), where its addresses cannot be read.
            reasons += ["%s is driven by %s but has no interface on the host (moved into a container's network "
                        "namespace?) - what it carries cannot be known" % (a, self.devices[a]["driver"])
                        for a in members if self.devices[a].get("is_network") and not self.devices[a]["netdevs"]
                        and self.devices[a].get("driver") not in (None, "vfio-pci", "pci-stub")]
            ports = ["%s is a port of %s" % (n["name"], ", ".join(n["uppers"])) for a in members
                     for n in self.devices[a]["netdevs"] if n.get("uppers")]
            if ports and not reasons:
                self.warnings.append("%s (%s): %s - the guests on it lose that uplink when the device is bound, and "
                                     "/etc/network/interfaces still names it" % (
                                         dev["selected_by"], dev["address"], "; ".join(ports)))
            if not reasons:
                continue
            message = "%s (%s): refusing - it carries a management path: %s" % (
                dev["selected_by"], dev["address"], "; ".join(reasons))
            if dev["force"]:
                self.warnings.append(message.replace("refusing", "FORCED although") + " - force: true was set")
            else:
                self.errors.append(message + " - set force: true on this entry to override")

    def check_blacklist(self, selected: list[dict]) -> list[str]:
        picked = {d["address"] for d in selected}
        raw = self.inputs.get("blacklist_drivers") or []
        if not isinstance(raw, list):
            self.errors.append("passthrough_blacklist_drivers: %r is not a list of module names" % (raw,))
            return []
        drivers = []
        for index, entry in enumerate(raw):
            name, problem = module_name(entry)
            if problem:
                self.errors.append("passthrough_blacklist_drivers[%d]: %s" % (index, problem))
            else:
                drivers.append(name)
        for driver in drivers:
            # kmod treats - and _ alike: compare normalized names.
            users = sorted(a for a, d in self.devices.items() if a not in picked
                           and (normalize_module(d["driver"] or "") == driver
                                or driver in [normalize_module(m) for m in d.get("modules", [])]))
            if users:
                self.errors.append("passthrough_blacklist_drivers: %r would also take %s, which is not selected" % (
                    driver, ", ".join(users)))
        return sorted(set(drivers))

    # --- decisions -------------------------------------------------------
    def kernels(self) -> list[str]:
        """Every kernel the node may boot (a pinned or fallback one too), the running one included."""
        running = self.host.get("kernel_release")
        return sorted(set(self.host.get("installed_kernels") or []) | ({running} if running else set()),
                      key=kernel_version)

    def cmdline_tokens(self) -> list[str]:
        tokens = []
        old = [k for k in self.kernels() if kernel_version(k) < (6, 8)]
        if self.host.get("cpu_vendor") == "intel" and old:
            tokens.append("intel_iommu=on")
            self.reasons.append("intel_iommu=on: Intel CPU and kernel %s installed (before 6.8 the Intel IOMMU is "
                                "off by default)" % ", ".join(old))
        elif self.host.get("cpu_vendor") == "intel":
            self.reasons.append("no intel_iommu=on: every installed kernel (%s) enables the Intel IOMMU by default "
                                "(6.8+)" % ", ".join(self.kernels()))
        if self.flag("passthrough_iommu_pt", self.inputs.get("iommu_pt"), default=True):
            tokens.append("iommu=pt")
            self.reasons.append("iommu=pt: passthrough_iommu_pt is true")
        extra = self.inputs.get("extra_cmdline") or []
        if not isinstance(extra, list):
            self.errors.append("passthrough_extra_cmdline: %r is not a list of kernel parameters" % (extra,))
            extra = []
        for index, value in enumerate(extra):
            token, problem = cmdline_token(value)
            problem = problem or self.extra_token_problem(token)
            if problem:
                self.errors.append("passthrough_extra_cmdline[%d]: %s" % (index, problem))
            elif token not in tokens:
                tokens.append(token)
        return tokens

    def extra_token_problem(self, token: str) -> str | None:
        """What a token of passthrough_extra_cmdline would do at the role's reboot that the guards would not see:
        names compare as the kernel compares them (kernel/params.c parameq: "-" and "_" alike)."""
        name, _sep, value = token.partition("=")
        key = param_key(name)
        if key in MANAGED_KEYS:
            return "%r sets %s, which the role decides (see passthrough_iommu_pt)" % (token, name)
        if key == "amd_iommu" and "off" in value.split(","):
            return "%r switches the IOMMU off: no VM could start with a device" % token
        if key in ("vfio_pci.ids", "pci_stub.ids"):
            return ("%r binds devices by ID at boot without the role's guards (the management NIC, storage, IOMMU "
                    "groups) - select them in passthrough_devices" % token)
        if key in ("net.ifnames", "biosdevname"):
            return ("%r renames the network interfaces at the next boot, while /etc/network/interfaces names the "
                    "current ones - the management bridge would come up without its port" % token)
        kept_off = blacklisted(token)
        if kept_off:
            managing = {}
            for device in self.devices.values():
                reasons = management_reasons(device, self.corosync)
                if device.get("driver") and reasons:
                    managing.setdefault(normalize_module(device["driver"]), "%s (%s)" % (device["address"], reasons[0]))
            hit = [m for m in kept_off if m in managing]
            if hit:
                return "%r keeps %s from loading, the driver of the management NIC %s - the node would lose its " \
                       "network at the next boot" % (token, hit[0], managing[hit[0]])
        return None

    def modules(self) -> list[str]:
        kernels = self.kernels()
        # vfio_virqfd is a module before 6.2 only. vfio_pci depends on it there, so modprobe loads it
        # anyway; it is listed only when every kernel has it, so no kernel boots with a missing module.
        if kernels and all(kernel_version(k) < (6, 2) for k in kernels):
            self.reasons.append("vfio_virqfd: every installed kernel (%s) is before 6.2, where it is still a "
                                "module" % ", ".join(kernels))
            return BASE_MODULES + ["vfio_virqfd"]
        if any(kernel_version(k) < (6, 2) for k in kernels):
            self.reasons.append("no vfio_virqfd: kernels from 6.2 on lack it; on the older ones installed, vfio_pci "
                                "loads it as a dependency")
        return list(BASE_MODULES)

    def check_foreign_config(self, selected: list[dict], ids: list[str], taken: set, loader: str | None) -> None:
        """Module configuration the role does not own that decides bindings next to it (adopted lines aside).
        A vfio-pci binding counts in every form _modconf reads: options lines, `vfio_pci ids=` in the initramfs
        module list, and a vfio-pci.ids= kernel parameter in the file the boot loader reads."""
        picked = {d["address"] for d in selected}
        bindings = [e for e in self.host.get("vfio_config") or [] if e["kind"] in ("options", "load")]
        bindings += [e for e in self.host.get("handmade") or [] if e["kind"] == "kernel_parameter" and (
            loader not in ("grub", "systemd-boot") or (e["file"] == KERNEL_CMDLINE) == (
                loader == "systemd-boot"))]
        for entry in bindings + [e for e in self.host.get("vfio_config") or [] if e not in bindings]:
            # The role's block in the initramfs module list names modules only: an ids= line there is hand-made.
            owned = entry["file"] in OWNED_PATHS and not (entry["file"] == INITRAMFS_MODULES and entry.get("ids"))
            if owned or (entry["file"], entry["line"]) in taken:
                continue
            where = "%s:%d (%r)" % (entry["file"], entry["line"], entry["text"])
            if entry["kind"] in ("options", "load", "kernel_parameter"):
                if not entry.get("ids"):
                    continue
                bound = sorted(a for a, d in self.devices.items() if a not in picked
                               and any(spec_matches(i, d) for i in entry["ids"]))
                # Only an options line is joined by kmod with the role's own ids= (the kernel keeps the last).
                fights = bool(ids) and entry["kind"] == "options"
                if fights or bound:
                    self.errors.append(
                        "foreign vfio-pci ids at %s: %s - remove that line, or set passthrough_adopt: true to take "
                        "it over" % (where, "kmod joins option lines and the kernel keeps only the last ids=, "
                                            "so it overrides the role's ids= or is overridden by it" if fights else
                                            "it binds %s, which is not selected" % ", ".join(bound)))
            elif entry["kind"] in ("install", "remove") and (entry.get("module") or "").startswith("vfio"):
                # An install line of another module is here because it keeps that driver off: the hand-made
                # lockout check (or its warning) speaks for it.
                self.errors.append("foreign %s line for %s at %s replaces how the module loads - remove it" % (
                    entry["kind"], entry["module"], where))
            elif entry["kind"] == "driverctl" and entry.get("address") in picked and entry["module"] != "vfio_pci":
                self.errors.append("driverctl override at %s binds %s to %s at every boot - remove it with "
                                   "driverctl unset-override %s" % (where, entry["address"], entry["text"],
                                                                    entry["address"]))

    def check_grub_overrides(self, tokens: list[str]) -> None:
        """A GRUB drop-in sourced after the role's that sets GRUB_CMDLINE_LINUX outright drops the role's tokens:
        the node would boot without them (no IOMMU, devices on their host drivers)."""
        for line in self.host.get("grub_cmdline_overrides") or []:
            if line["text"] is None:
                self.errors.append("%s could not be read - it may set GRUB_CMDLINE_LINUX after the role's drop-in "
                                   "and drop %s: make it readable" % (line["file"], " ".join(tokens)))
            elif sources_after_dropin(line["file"]):
                self.errors.append(
                    "%s:%d %r sets GRUB_CMDLINE_LINUX after the role's drop-in %s, so update-grub would drop %s - "
                    "keep its value there (GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX ...\") or rename the file to "
                    "sort before %s" % (line["file"], line["line"], line["text"], GRUB_DROPIN, " ".join(tokens),
                                        GRUB_DROPIN.rsplit("/", 1)[1]))

    def check_outvoting_tokens(self, tokens: list[str], taken: set) -> None:
        """A hand-made value of a parameter the role sets (intel_iommu=off, iommu=soft) in a GRUB file: the kernel
        keeps the last one it parses, and GRUB_CMDLINE_LINUX_DEFAULT comes after the role's GRUB_CMDLINE_LINUX -
        the role would reboot for nothing and the IOMMU stay as it is."""
        keys = {param_key(t.split("=", 1)[0]): t for t in tokens if "=" in t}
        for line in self.host.get("handmade") or []:
            if line["kind"] != "kernel_parameter" or line["file"] == KERNEL_CMDLINE or \
                    (line["file"], line["line"]) in taken:
                continue
            hand = line["text"].strip('"\'')
            wanted = keys.get(param_key(hand.split("=", 1)[0]))
            if wanted and not satisfied(wanted, [hand]):
                self.errors.append("%s:%d %r contradicts the role's %s, and the kernel keeps the last one on its "
                                   "command line (GRUB_CMDLINE_LINUX_DEFAULT comes after the role's drop-in) - "
                                   "remove it first" % (line["file"], line["line"], hand, wanted))

    def check_handmade_lockout(self, acts: bool, reboot: str, taken: set) -> None:
        """A hand-made blacklist of the management NIC's driver takes the node off the network at its next
        boot; a reboot by the role would be that boot. Adoption comments such a line out."""
        for entry in self.host.get("handmade") or []:
            if not entry.get("lockout") or (entry["file"], entry["line"]) in taken:
                continue
            where = "hand-made %s:%d (%r): %s" % (entry["file"], entry["line"], entry["text"], entry["problems"][0])
            # Adoption comments out blacklist and install lines below /etc; anything else is left to the admin.
            regular = (self.host.get("handmade_files") or {}).get(entry["file"], {}).get("type") == "file"
            adopt = "set passthrough_adopt: true to drop it, " if entry["kind"] in ("blacklist", "install") and \
                entry["file"].startswith("/etc/") and regular else ""
            if acts and reboot == "if_needed":
                self.errors.append("%s - a reboot by the role would lock you out: remove that line first, %sor set "
                                   "passthrough_reboot: never and deal with it yourself" % (where, adopt))
            else:
                self.warnings.append(where)

    def check_in_use(self, releases: list[dict]) -> None:
        """Taking a device back from vfio-pci while a VM holds its group would take it from that VM."""
        users = self.host.get("vfio_users", {})
        for target in releases:
            group = self.devices.get(target["address"], {}).get("iommu_group")
            if group is not None and users is None:
                # Fail closed: nobody seen is not nobody there.
                self.errors.append(
                    "%s (%s) is no longer selected, but whether a running VM holds IOMMU group %s cannot be known: "
                    "%s - releasing it now could take it from that VM; set passthrough_bind_now: false to give it "
                    "back at the next boot" % (target["address"], target["id"], group,
                                               self.host.get("vfio_users_error") or "pci_facts did not read /proc"))
            elif group is not None and users.get(group):
                self.errors.append(
                    "%s (%s) is no longer selected, but IOMMU group %s is in use by %s: releasing it now would take "
                    "it from a running VM - stop that VM first, or set passthrough_bind_now: false to give it back "
                    "at the next boot" % (target["address"], target["id"], group, ", ".join(users[group])))

    def bind_split(self, selected: list[dict]) -> tuple[list[str], list[dict]]:
        """IDs for `options vfio-pci ids=` and devices for the address script."""
        method = self.choice("passthrough_bind_method", self.inputs.get("bind_method"), ("auto", "ids", "address"),
                             "auto")
        picked = {d["address"] for d in selected}
        ids, by_address = [], []
        for pci_id in sorted({d["id"] for d in selected}):
            same = sorted(a for a, d in self.devices.items() if "%s:%s" % (d["vendor"], d["device"]) == pci_id)
            unselected = [a for a in same if a not in picked]
            if method == "ids" and unselected:
                self.errors.append("passthrough_bind_method: 'ids' would also bind %s (%s, not selected); use "
                                   "'address' or 'auto'" % (", ".join(unselected), pci_id))
            if method == "ids" or (method == "auto" and not unselected):
                ids.append(pci_id)
                self.reasons.append("%s bound by ID: every device with this ID is selected" % pci_id
                                    if method == "auto" else "%s bound by ID: passthrough_bind_method is ids" % pci_id)
            else:
                by_address += [{"address": d["address"], "id": d["id"]} for d in selected if d["id"] == pci_id]
                self.reasons.append("%s bound by address: %s" % (
                    pci_id, "passthrough_bind_method is address" if method == "address"
                    else "%s has the same ID and is not selected" % ", ".join(unselected)))
        return ids, by_address

    def boot_loader(self) -> str | None:
        wanted = self.choice("passthrough_boot_loader", self.inputs.get("boot_loader"),
                             ("auto", "grub", "systemd-boot"), "auto")
        if wanted != "auto":
            return wanted
        found = self.host.get("boot_loader", {})
        if found.get("name") in ("grub", "systemd-boot"):
            self.reasons.append("boot loader %s: %s" % (found["name"], found.get("source", "")))
            return found["name"]
        self.errors.append("passthrough_boot_loader: 'auto' could not tell the boot loader (%s); set grub or "
                           "systemd-boot" % (found.get("source") or "nothing recognised"))
        return None

    def start_adoption(self, state: str) -> str | None:
        """passthrough_adopt: read the manifest of earlier adoptions; the boot loader decides which kernel
        parameters count, so it is decided first. Returns the boot loader (None without adoption)."""
        text = (self.seen.get(ADOPT_MANIFEST) or {}).get("content")
        self.manifest, problem = read_manifest(text if (self.seen.get(ADOPT_MANIFEST) or {}).get("exists") else None)
        if problem:
            self.errors.append(problem + " - the record of adopted files is unusable: move it away only after "
                               "comparing the files below it with their originals")
        if not (self.flag("passthrough_adopt", self.inputs.get("adopt")) and state == "present"):
            return None
        self.adoption = Adoption(self.host, self.manifest)
        return self.boot_loader()

    def adopt(self, selected: list[dict], tokens: list[str], loader: str | None) -> set:
        """Decide what adoption takes over; (file, line) of each taken line (the guards skip them)."""
        if self.adoption is None:
            return set()
        self.adoption.decide(selected, tokens, loader)
        self.adoption.texts = self.adoption.edits(cmdline_record(self.seen))
        self.errors += self.adoption.errors
        self.reasons += self.adoption.resumed
        for item in self.adoption.take:
            self.reasons.append("adopting %s:%d %r - %s" % (item["file"], item["line"], item["text"], item["reason"]))
        for item in self.adoption.leave:
            self.reasons.append("not adopting %s:%d %r - %s" % (
                item["file"], item["line"], item["text"], item["reason"]))
        picked = {d["address"] for d in selected}
        held = self.check_adopted_in_use(picked)
        for target in self.handmade_targets(loader):
            if target["address"] not in picked and target["address"] not in held:
                self.warnings.append("the hand-made configuration binds %s (%s), which this plan does not select: "
                                     "it goes back to its driver at the next boot" % (target["address"], target["id"]))
        return {(i["file"], i["line"]) for i in self.adoption.take}

    def check_adopted_in_use(self, picked: set) -> set:
        """Adoption takes a hand-made boot binding out; a device it bound that a running VM holds now and that the
        selection does not keep on vfio-pci goes to its host driver at the next boot, and the VM no longer
        starts. Refused before any write, naming the device, the line and the holder. Returns those devices."""
        users = self.host.get("vfio_users", {})
        taken = {(i["file"], i["line"]) for i in self.adoption.take} if self.adoption else set()
        held = set()
        for entry in self.host.get("handmade") or []:
            if (entry["file"], entry["line"]) not in taken or not entry.get("ids"):
                continue
            for address, device in sorted(self.devices.items()):
                group = device.get("iommu_group")
                if address in picked or device.get("driver") != "vfio-pci" or group is None or not any(
                        spec_matches(i, device) for i in entry["ids"]):
                    continue
                where = "%s:%d (%r)" % (entry["file"], entry["line"], entry["text"])
                if users is None:
                    # Fail closed: nobody seen is not nobody there.
                    holder = "whether a running VM holds its IOMMU group %s cannot be known (%s)" % (
                        group, self.host.get("vfio_users_error") or "pci_facts did not read /proc")
                elif users.get(group):
                    holder = "IOMMU group %s is in use by %s" % (group, ", ".join(users[group]))
                else:
                    continue
                held.add(address)
                self.errors.append(
                    "passthrough_adopt would take out %s, the boot binding of %s (%s:%s), which this plan does not "
                    "select: %s - at the next boot it goes to its host driver and that VM no longer starts; select it "
                    "(passthrough_devices) or stop the VM and take it off first" % (
                        where, address, device.get("vendor"), device.get("device"), holder))
        return held

    def adoption_state(self, plan: dict) -> dict:
        """owned_files' part of adopting (present) or of giving the adopted files back (absent)."""
        files = self.host.get("handmade_files") or {}
        nothing = {"files": [], "copies": [], "dirs": [], "rebuild": []}
        if plan["state"] == "present":
            return {"adopt": writes(plan["adoption"], self.manifest, files, cmdline_record(self.seen))
                    if plan["adoption"] and plan["act"]
                    else nothing, "give_back": [], "adopt_cleanup": {"remove": [], "remove_empty_dirs": []}}
        restores, errors = give_back(self.manifest, files, cmdline_record(self.seen))
        self.errors += errors
        return {"adopt": nothing, "give_back": restores,
                "adopt_cleanup": {"remove": [ADOPT_MANIFEST] if self.manifest["files"] else [],
                                  "remove_empty_dirs": copy_dirs(list(self.manifest["files"]))[::-1]}}

    def plan(self) -> dict:
        state = self.choice("passthrough_state", self.inputs.get("state"), ("present", "absent"), "present")
        loader = self.start_adoption(state)
        selected = self.select(loader)
        tokens = self.cmdline_tokens()
        plan = {"state": state, "devices": selected,
                "targets": [{"address": d["address"], "id": d["id"]} for d in selected],
                "cmdline_tokens": tokens, "modules": self.modules(), "ids": [], "address_binds": [],
                "softdeps": [], "blacklist": [], "boot_loader": None,
                "bind_now": self.flag("passthrough_bind_now", self.inputs.get("bind_now"), default=True),
                "reboot": self.choice("passthrough_reboot", self.inputs.get("reboot"), ("never", "if_needed"), "never")}
        taken: set = set()
        if selected and state == "present":
            self.check_iommu(tokens)
            self.check_groups(selected)
            self.check_storage(selected)
            self.check_lockout(selected)
            plan["blacklist"] = self.check_blacklist(selected)
            plan["ids"], plan["address_binds"] = self.bind_split(selected)
            plan["boot_loader"] = loader if self.adoption is not None else self.boot_loader()
            taken = self.adopt(selected, tokens, plan["boot_loader"])
            self.check_foreign_config(selected, plan["ids"], taken, plan["boot_loader"])
            if plan["boot_loader"] == "grub" and tokens:
                self.check_grub_overrides(tokens)
                self.check_outvoting_tokens(tokens, taken)
            plan["softdeps"] = sorted({d["native_driver"] for d in selected
                                       if d["native_driver"] and d["id"] in plan["ids"]})
        elif self.adoption is not None and self.host.get("handmade"):
            self.errors.append("passthrough_adopt: nothing to adopt into - the hand-made configuration selects no "
                               "device on this node and passthrough_devices is empty: name the devices in "
                               "passthrough_devices, or remove the hand-made lines by hand")
        self.check_handmade_lockout(bool(selected) or state == "absent", plan["reboot"], taken)
        plan["adoption"] = {"take": self.adoption.take, "leave": self.adoption.leave, "texts": self.adoption.texts,
                            "targets": self.handmade_targets(loader), "selection": self.selection} \
            if self.adoption is not None and taken else None
        plan["adopted"] = self.manifest
        plan["record"] = self.new_record
        # Removal needs no boot loader decision: it removes what the node's records name.
        plan.update(desired(plan, self.seen, self.host))
        plan.update(self.adoption_state(plan))
        plan["bind_drivers"] = {t["address"]: self.devices.get(t["address"], {}).get("driver")
                                for t in plan["bind_targets"]}
        moves = [t for t in plan["bind_targets"]
                 if (plan["bind_drivers"][t["address"]] == "vfio-pci") != (t["state"] == "present")]
        # Live (re)binding only where it can work and something would move.
        plan["bind_live"] = bool(plan["bind_now"] and self.host.get("iommu_active") and moves)
        if plan["bind_live"]:
            self.check_in_use([t for t in moves if t["state"] == "absent"])
        self.errors += plan.pop("errors")
        self.warnings += plan.pop("warnings", [])
        plan.update(errors=self.errors, warnings=self.warnings, reasons=self.reasons)
        return plan


def make_plan(facts: dict, inputs: dict, seen: dict | None = None, corosync_conf: str | None = None) -> dict:
    """The whole plan; `seen` is file_state's `files` for desired.watched_paths()."""
    return Planner(facts, inputs, seen or {}, corosync_conf).plan()
