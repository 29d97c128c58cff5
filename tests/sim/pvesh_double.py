"""TEST DOUBLE for Proxmox VE's `pvesh` - not Proxmox. Proxmox VE cannot be installed here.

It answers the small API subset vfio.proxmox uses, with the validation rules of
Proxmox's own code, each cited where it is copied:
  pvesh get    /cluster/mapping/pci [--check-node NODE]    (pve-manager PVE/API2/Cluster/Mapping/PCI.pm index)
  pvesh get    /cluster/mapping/pci/ID                     (... get)
  pvesh create /cluster/mapping/pci --id ID --map S [--map S ...] [--description D] [--mdev B]
               [--live-migration-capable B]               (... create)
  pvesh set    /cluster/mapping/pci/ID [same options] [--digest D] [--delete a,b]   (... update)
  pvesh delete /cluster/mapping/pci/ID                     (... delete)
  pvesh get    /nodes/NODE/hardware/pci [--pci-class-blacklist L]   (pve-manager PVE/API2/Hardware/PCI.pm)
  pvesh get    /nodes                                      (the cluster's members)
  pvesh get    /cluster/resources [--type vm]              (pve-manager PVE/API2/Cluster.pm resources: VMs only)
  pvesh get    /nodes/NODE/qemu/VMID/config                (qemu-server PVE/API2/Qemu.pm, config)
  pvesh set    /nodes/NODE/qemu/VMID/config [--hostpciN V] [--delete hostpciN] [--digest D]
  qm showcmd VMID                                          (qemu-server: resolves hostpci, no start)
Output is JSON (`--output-format json` is accepted and implied). Errors go to stderr with
exit code 255, as pvesh does. `qm` is this file called with `qm` as its first argument.
VMs live in the state file too: {"vms": {"100": {"node": "pve1", "config": {...}}}}.

Where it differs from Proxmox, on purpose: the cluster configuration (pmxcfs) is one JSON
file, $PVESH_DOUBLE_STATE ({"nodes": [...], "mapping_pci": {...}}), shared by the simulated
nodes of one cluster; the digest is the SHA-1 of that file's mapping section; this node's
name is $PVESH_DOUBLE_NODE (default: the host name) and its sysfs is $PVESH_DOUBLE_SYSFS
(default /sys); `--check-node` for another node reads that node's sysfs from
$PVESH_DOUBLE_PEERS ({"node": "sysfs root"}) or $PVESH_DOUBLE_PEER_ROOT/<node>/tree/sys, where real
pvesh proxies the call to that node (the API's proxyto); `hardware/pci` of another node likewise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys

# pve-common src/PVE/JSONSchema.pm: $CONFIGID_RE and pve_verify_node_name
CONFIGID_RE = re.compile(r"^[a-z][a-z0-9_-]+$", re.IGNORECASE)
NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$")
# pve-guest-common src/PVE/Mapping/PCI.pm: $PCI_RE and $map_fmt
PCI_RE = r"[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?"
MAP_FORMAT = {
    "node": (NODE_RE, True),
    "id": (re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$"), True),
    "subsystem-id": (re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$"), False),
    "path": (re.compile(r"^(?:%s;)*%s$" % (PCI_RE, PCI_RE)), True),
    # JSONSchema.pm check_type integer: /^[+-]?\d+$/ (so +12 is 12)
    "iommugroup": (re.compile(r"^[+-]?\d+$"), False),
    # Mapping/PCI.pm description maxLength 4096; SectionConfig.pm refuses a line break in any value
    "description": (re.compile(r"^[^\n\r]{0,4096}$"), False),
}
# Mapping/PCI.pm options(): map is required (map => {}), the others optional.
OPTIONAL = {"description", "mdev", "live-migration-capable"}
BOOLEANS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "on": 1, "off": 0}
# pve-manager PVE/API2/Hardware/PCI.pm: my $default_class_blacklist = "05;06;0b";
DEFAULT_CLASS_BLACKLIST = "05;06;0b"


class ApiError(Exception):
    pass


def state_path() -> str:
    return os.environ.get("PVESH_DOUBLE_STATE", "/etc/pve/.pvesh-double.json")


def load() -> dict:
    try:
        with open(state_path()) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"nodes": [local_node()], "mapping_pci": {}}


def save(state: dict) -> None:
    tmp = state_path() + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(tmp, state_path())


def digest(state: dict) -> str:
    return hashlib.sha1(json.dumps(state["mapping_pci"], sort_keys=True).encode()).hexdigest()


def peer_sysfs(node: str) -> str | None:
    """Another node's sysfs root: $PVESH_DOUBLE_PEERS ({"node": "sysfs root"}), else
    $PVESH_DOUBLE_PEER_ROOT/<node>/tree/sys (the simulated cluster mounts every node's tree there)."""
    peers = json.loads(os.environ.get("PVESH_DOUBLE_PEERS") or "{}")
    if node in peers:
        return peers[node]
    root = os.environ.get("PVESH_DOUBLE_PEER_ROOT")
    found = os.path.join(root, node, "tree", "sys") if root else None
    return found if found and os.path.isdir(found) else None


def local_node() -> str:
    return os.environ.get("PVESH_DOUBLE_NODE") or socket.gethostname().split(".")[0]


def property_fields(text: str) -> list[tuple[str | None, str]]:
    """pve-common src/PVE/JSONSchema.pm parse_property_string: split on commas, skip empty fields (so a
    trailing comma too); `key=value` by Perl's /^([^=]+)=(.+)$/ (`.` stops at a line break, `$` matches
    before a final one, so a value ending in one loses it); a field with `=` that does not match - `key=`,
    `=x`, a line break inside the value - is "missing key"; a field without `=` is the default key's value
    (None here)."""
    fields = []
    for part in text.split(","):
        if part.strip() == "":
            continue
        match = re.match(r"^([^=]+)=(.+)$", part)
        if match:
            fields.append((match.group(1), match.group(2)))
        elif "=" in part:
            raise ApiError("invalid format - missing key in comma-separated list property")
        else:
            fields.append((None, part))
    return fields


def parse_map(text: str) -> dict:
    """One `map` property string, checked against $map_fmt (Mapping/PCI.pm) by parse_property_string."""
    entry = {}
    for key, value in property_fields(text):
        if key is None:  # $map_fmt has no default key
            raise ApiError("map: invalid format - value without key, but schema does not define a default key")
        if key not in MAP_FORMAT:
            raise ApiError("map: invalid format - invalid key in comma-separated list property: %s" % key)
        if key in entry:
            raise ApiError("map: invalid format - duplicate key in comma-separated list property: %s" % key)
        if not MAP_FORMAT[key][0].match(value):
            raise ApiError("map: invalid format - %s: value does not match the regex pattern" % key)
        entry[key] = value
    for key, (_pattern, required) in MAP_FORMAT.items():
        if required and key not in entry:
            raise ApiError("map: invalid format - %s: property is missing and it is not optional" % key)
    return entry


def check_config(options: dict, create: bool) -> dict:
    """SectionConfig check_config for the pci type: known properties, formats, required map."""
    out = {}
    for key, values in options.items():
        if key == "map":
            for text in values:
                parse_map(text)
            out["map"] = list(values)
        elif key in ("mdev", "live-migration-capable"):
            value = BOOLEANS.get(values[-1].lower())
            if value is None:
                raise ApiError("%s: type check ('boolean') failed - got '%s'" % (key, values[-1]))
            out[key] = value
        elif key == "description":
            if len(values[-1]) > 4096:
                raise ApiError("description: value may only be 4096 characters long")
            if re.search(r"[\r\n]", values[-1]):  # SectionConfig.pm write_config
                raise ApiError("property '%s' contains a line feed" % key)
            out[key] = values[-1]
        else:
            raise ApiError("%s: property is not defined in schema and the schema does not allow additional "
                           "properties" % key)
    if create and "map" not in out:  # the create API's schema: map is not optional
        raise ApiError("map: property is missing and it is not optional")
    return {key: stored_text(value) for key, value in out.items()}


def stored_text(value):
    """What pmxcfs gives back of text the API wrote: the section config is written as UTF-8 but read as raw
    bytes (pve-cluster src/PVE/IPCC.xs newSVpv, no decoding), so a character above U+00FF comes back as its
    UTF-8 bytes, one character each; Latin-1 text is written as single bytes and survives."""
    if isinstance(value, list):
        # SectionConfig.pm checks line feeds on the array, not its items: an item with one is written over two
        # lines, and the read drops it ("ignore config line").
        return [stored_text(v) for v in value if not re.search(r"[\r\n]", v)]
    if isinstance(value, str) and any(ord(char) > 0xFF for char in value):
        return value.encode("utf-8").decode("latin-1")
    return value


def sysfs_read(base: str, name: str) -> str | None:
    try:
        with open(os.path.join(base, name)) as handle:
            return handle.readline().strip()
    except OSError:
        return None


def pci_device_info(sysfs: str, path: str) -> dict | None:
    """pve-common src/PVE/SysFSTools.pm pci_device_info, verbose: the hardware side of a check."""
    directory = os.path.join(sysfs, "bus", "pci", "devices", path)
    vendor, device = sysfs_read(directory, "vendor"), sysfs_read(directory, "device")
    if not vendor or not device or not vendor.startswith("0x") or not device.startswith("0x"):
        return None
    irq = sysfs_read(directory, "irq")  # SysFSTools.pm: no device without a numeric irq file
    if irq is None or not re.match(r"^\d+$", irq):
        return None
    info = {"vendor": vendor[2:], "device": device[2:]}
    sub_vendor, sub_device = sysfs_read(directory, "subsystem_vendor"), sysfs_read(directory, "subsystem_device")
    if sub_vendor is not None and sub_device is not None:
        info["subsystem-id"] = "%s:%s" % (sub_vendor.replace("0x", ""), sub_device.replace("0x", ""))
    group = os.path.join(directory, "iommu_group")
    if os.path.lexists(group):
        info["iommugroup"] = int(os.path.basename(os.readlink(group)))
    info["mdev"] = int(os.path.isdir(os.path.join(directory, "mdev_supported_types"))
                       or os.path.isdir(os.path.join(directory, "nvidia")))
    return info


def assert_valid(sysfs: str, name: str, entry: dict, mapping: dict) -> None:
    """pve-guest-common src/PVE/Mapping/PCI.pm assert_valid, rule for rule."""
    for index, given in enumerate(entry.get("path", "").split(";")):
        path = given if re.search(r"\.[a-f0-9]", given, re.IGNORECASE) else given + ".0"
        info = pci_device_info(sysfs, path)
        if info is None:
            raise ApiError("pci device '%s' not found" % path)
        expected = {"id": "%s:%s" % (info["vendor"], info["device"]), "iommugroup": info.get("iommugroup"),
                    "subsystem-id": info.get("subsystem-id"), "mdev": info["mdev"]}
        configured = {key: entry.get(key) for key in ("id", "iommugroup", "subsystem-id")}
        configured["mdev"] = 1 if mapping.get("mdev") else 0
        for prop in sorted(expected):
            if prop == "iommugroup" and index > 0:  # check iommu only on the first device
                continue
            want, have = expected[prop], configured[prop]
            if want is None and have is None:
                continue
            if want is not None and have is None:
                raise ApiError("missing expected property '%s' for device '%s'" % (prop, path))
            if want is None and have is not None:
                raise ApiError("unexpected property '%s' configured for device '%s'" % (prop, path))
            want, have = str(want).replace("0x", ""), str(have).replace("0x", "")
            if want != have:
                raise ApiError("'%s' does not match for '%s' (%s != %s)" % (prop, name, want, have))


def mapping_index(state: dict, check_node: str | None, sysfs: str) -> list[dict]:
    # Cluster/Mapping/PCI.pm index: proxied to `check-node` (localhost: here), then the entries are
    # looked up for the literal name, so `localhost` finds none ("No mapping for node localhost.").
    node = check_node
    if node is not None and node not in (local_node(), "localhost"):
        # Real pvesh forwards the call to that node over SSH; the double reads the node's
        # sysfs (peer_sysfs) instead.
        sysfs = peer_sysfs(node)
        if sysfs is None:
            raise ApiError("wrong node to check - %s != %s (pvesh double: no peer sysfs)" % (node, local_node()))
    result = []
    for mapping_id, mapping in state["mapping_pci"].items():
        entry = dict(mapping, id=mapping_id, digest=digest(state))
        if node is not None:
            entry["checks"] = []
            mine = []
            for text in mapping.get("map", []):
                try:
                    mine.append(parse_map(text))
                except ApiError as err:  # Mapping/PCI.pm get_node_mapping: warn, skip the entry
                    print("unable to parse PCI mapping entry '%s' - %s" % (text, err), file=sys.stderr)
            mine = [m for m in mine if m["node"] == node]
            if not mine:
                entry["checks"].append({"severity": "warning", "message": "No mapping for node %s." % node})
            for one in mine:
                try:
                    assert_valid(sysfs, mapping_id, one, entry)
                except ApiError as err:
                    entry["checks"].append({"severity": "error", "message": "Invalid configuration: %s\n" % err})
        result.append(entry)
    return result


def hardware_pci(sysfs: str, blacklist: str) -> list[dict]:
    """pve-common SysFSTools.pm lspci, verbose, behind Hardware/PCI.pm's class filter."""
    classes = [c for c in re.split(r"[;,\s]+", blacklist) if c]
    base = os.path.join(sysfs, "bus", "pci", "devices")
    result = []
    for name in sorted(os.listdir(base)):
        directory = os.path.join(base, name)
        pci_class = sysfs_read(directory, "class") or ""
        if classes and re.match(r"^0x(?:%s)" % "|".join(map(re.escape, classes)), pci_class):
            continue
        device = {"id": name, "class": pci_class, "vendor": sysfs_read(directory, "vendor"),
                  "device": sysfs_read(directory, "device"), "iommugroup": -1}
        info = pci_device_info(sysfs, name) or {}
        if "iommugroup" in info:
            device["iommugroup"] = info["iommugroup"]
        if info.get("mdev"):
            device["mdev"] = 1
        for key in ("subsystem_vendor", "subsystem_device"):
            value = sysfs_read(directory, key)
            if value is not None:
                device[key] = value
        result.append(device)
    return result


# qemu-server src/PVE/QemuServer/PCI.pm: $PCIRE and $hostpci_fmt (every key, with its format), MAX_HOSTPCI_DEVICES
HOSTPCI_PCIRE = r"(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?"
HEX_ID = re.compile(r"^0x[0-9a-fA-F]{4}$")
HOSTPCI_FORMAT = {
    "host": re.compile(r"^%s(;%s)*$" % (HOSTPCI_PCIRE, HOSTPCI_PCIRE)),
    "mapping": CONFIGID_RE,
    "romfile": re.compile(r"^[^,;]+$"),
    "mdev": re.compile(r"^[^/.:]+$"),
    "vendor-id": HEX_ID, "device-id": HEX_ID, "sub-vendor-id": HEX_ID, "sub-device-id": HEX_ID,
    "driver": re.compile(r"^(vfio|keep)$"),
}
HOSTPCI_BOOLEANS = {"rombar", "pcie", "x-vga", "legacy-igd"}
MAX_HOSTPCI = 16


def parse_boolean(value: str) -> str | None:
    """pve-common JSONSchema.pm parse_boolean."""
    if re.match(r"^(1|on|yes|true)$", value, re.IGNORECASE):
        return "1"
    if re.match(r"^(0|off|no|false)$", value, re.IGNORECASE):
        return "0"
    return None


def parse_hostpci(value: str) -> dict:
    """PCI.pm parse_hostpci, the parsing half: parse_property_string with `host` the default key (empty
    fields skipped), each value checked against its format, booleans parsed; host and mapping exclude
    each other."""
    res = {}
    for field, text in property_fields(value):
        key = field or "host"
        if key not in HOSTPCI_FORMAT and key not in HOSTPCI_BOOLEANS:
            raise ApiError("hostpci: invalid format - invalid key in comma-separated list property: %s" % key)
        if key in res:
            raise ApiError("hostpci: invalid format - duplicate key in comma-separated list property: %s" % key)
        if key in HOSTPCI_BOOLEANS:
            res[key] = parse_boolean(text)
            if res[key] is None:
                raise ApiError("hostpci: invalid format - %s: type check ('boolean') failed - got '%s'" % (key, text))
        elif not HOSTPCI_FORMAT[key].match(text):
            raise ApiError("hostpci: invalid format - %s: value does not match the regex pattern" % key)
        else:
            res[key] = text
    if "host" in res and "mapping" in res:
        raise ApiError("Cannot set both 'host' and 'mapping'.")
    if "host" not in res and "mapping" not in res:
        raise ApiError("Either 'host' or 'mapping' must be set.")
    return res


def is_q35(config: dict) -> bool:
    """qemu-server Machine.pm parse_machine + machine_type_is_q35: `machine` is a property string whose default
    key is `type`; q35 when the type matches /q35/ (no machine, or no type: i440fx)."""
    fields = dict((key or "type", value) for key, value in property_fields(config.get("machine") or ""))
    return "q35" in (fields.get("type") or "")


def lspci(sysfs: str, address: str) -> list[str]:
    """pve-common SysFSTools.pm lspci($filter): every device whose full address matches
    /^(0000:)?\\Q$filter\\E/ - a prefix, so `02:00` is every function of 0000:02:00."""
    base = os.path.join(sysfs, "bus", "pci", "devices")
    return [name for name in sorted(os.listdir(base))
            if name.startswith(address) or name.startswith("0000:" + address)]


def vm(state: dict, vmid: str, node: str | None = None) -> dict:
    found = state.get("vms", {}).get(vmid)
    if found is None or (node is not None and found["node"] != node):
        where = node or local_node()
        raise ApiError("Configuration file 'nodes/%s/qemu-server/%s.conf' does not exist" % (where, vmid))
    return found


def vm_digest(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()


def vm_config(state: dict, node: str, vmid: str, command: str, options: dict[str, list[str]]) -> object:
    entry = vm(state, vmid, node)
    if command == "get":
        return dict(entry["config"], digest=vm_digest(entry["config"]))
    wanted = options.pop("digest", [None])[-1]
    if wanted and wanted != vm_digest(entry["config"]):  # pve-common Tools.pm assert_if_modified
        raise ApiError("detected modified configuration - file changed by other user? Try again.")
    delete = [k for k in re.split(r"[;,\s]+", options.pop("delete", [""])[-1]) if k]
    for key, values in options.items():
        match = re.match(r"^hostpci(\d+)$", key)
        if not match or int(match.group(1)) >= MAX_HOSTPCI:
            raise ApiError("%s: property is not defined in schema (pvesh double knows hostpci0..15 only)" % key)
        parse_hostpci(values[-1])
        if key in delete:
            raise ApiError("cannot set and delete property '%s' at the same time!" % key)
        entry["config"][key] = values[-1]
    for key in delete:
        entry["config"].pop(key, None)
    save(state)
    return None


def startup_order(config: dict) -> int:
    """pve-common JSONSchema.pm pve_parse_startup_order: `order=N,up=..,down=..`; no order sorts last (LONG_MAX)."""
    for field in (config.get("startup") or "").split(","):
        key, _sep, value = field.partition("=")
        if key == "order" and value.isdigit():
            return int(value)
    return sys.maxsize


def bulk_power(state: dict, node: str, action: str, options: dict[str, list[str]]) -> None:
    """pve-manager PVE/API2/Nodes.pm stopall / startall: the node's guests (only `vms` when given; HA-managed
    ones only then), by startup order - stopall highest order first, startall lowest first and only onboot=1
    guests unless `force`. Each action is appended to the state's `log`, so tests see the order."""
    wanted = {int(v) for v in re.split(r"[;,\s]+", options.get("vms", [""])[-1]) if v}
    force = BOOLEANS.get(options.get("force", ["0"])[-1].lower(), 0)
    mine = [(startup_order(g["config"]), int(vmid), g) for vmid, g in state.get("vms", {}).items()
            if g["node"] == node and (int(vmid) in wanted if wanted else not g.get("ha"))]
    for _order, vmid, guest in sorted(mine, reverse=(action == "stopall")):
        if action == "stopall" and guest.get("status") == "running":
            guest["status"] = "stopped"
            state.setdefault("log", []).append("stop %d" % vmid)
        elif action == "startall" and guest.get("status") != "running" and (force or guest["config"].get("onboot")):
            guest["status"] = "running"
            state.setdefault("log", []).append("start %d" % vmid)
    save(state)


def vm_views(state: dict, node: str, vmid: str, rest: list[str]) -> object:
    """qemu-server API2/Qemu.pm vm_pending (current and pending values, config_with_pending_array), snapshot_list
    (the snapshots and `current`) and snapshot config. A VM's pending changes and snapshots are in the state file
    as {"pending": {key: value}, "snapshots": {name: config}} next to its config."""
    entry = vm(state, vmid, node)
    if rest == ["pending"]:
        pending = entry.get("pending") or {}
        return [dict({"key": key}, **({"value": entry["config"][key]} if key in entry["config"] else {}),
                     **({"pending": pending[key]} if key in pending else {}))
                for key in sorted(set(entry["config"]) | set(pending))]
    if rest == ["snapshot"]:
        return [{"name": name} for name in sorted(entry.get("snapshots") or {})] + [{"name": "current"}]
    if len(rest) == 3 and rest[0] == "snapshot" and rest[2] == "config":
        if rest[1] not in (entry.get("snapshots") or {}):
            raise ApiError("snapshot '%s' does not exist" % rest[1])
        return entry["snapshots"][rest[1]]
    raise ApiError("no such API path '/nodes/%s/qemu/%s/%s' (pvesh double)" % (node, vmid, "/".join(rest)))


def qm_showcmd(state: dict, vmid: str, sysfs: str) -> str:
    """What `qm showcmd` checks for hostpci entries: PCI.pm parse_hostpci (mappings resolved for this node,
    assert_valid, each entry one alternative, addresses expanded by SysFSTools lspci), parse_hostpci_devices
    (pcie needs q35), choose_hostpci_devices (one alternative: used as it is; several: the first free one; a
    device used twice: refused)."""
    config = vm(state, vmid, local_node())["config"]
    devices, used = [], set()
    for key in sorted((k for k in config if re.match(r"^hostpci\d+$", k)), key=lambda k: int(k[7:])):
        res = parse_hostpci(config[key])
        if "mapping" in res:
            name = res["mapping"]
            mapping = state["mapping_pci"].get(name)
            mine = [parse_map(t) for t in (mapping or {}).get("map", [])]
            mine = [m for m in mine if m["node"] == local_node()]
            if not mine:
                raise ApiError("PCI device mapping not found for '%s'" % name)
            for entry in mine:
                try:
                    assert_valid(sysfs, name, entry, mapping)
                except ApiError as err:
                    raise ApiError("PCI device mapping invalid (hardware probably changed): %s" % err) from None
            alternatives = [entry["path"].split(";") for entry in mine]
        else:
            alternatives = [res["host"].split(";")]
        expanded = []
        for alternative in alternatives:
            ids = []
            for address in alternative:
                found = lspci(sysfs, address)
                if not found:
                    raise ApiError("no PCI device found for '%s'" % address)
                ids += found
            expanded.append(ids)
        if res.get("pcie") == "1" and not is_q35(config):
            raise ApiError("q35 machine model is not enabled")
        if len(expanded) == 1:
            chosen = expanded[0]
        else:
            chosen = next((ids for ids in expanded if not used & set(ids)), None)
            if chosen is None:
                raise ApiError("could not find a free device for '%s'" % key)
        for address in chosen:
            if address in used:
                raise ApiError("device '%s' assigned more than once" % address)
            used.add(address)
        devices.append("-device vfio-pci,host=%s,id=%s" % (chosen[0], key))
    return " ".join(["/usr/bin/kvm", "-id", vmid, *devices])


# PVE/Storage.pm storage_config; the default storage.cfg of a Proxmox VE install (local, local-lvm or
# local-zfs): none of them shared. The state's `storage` {name: {shared: 0|1}} replaces it.
DEFAULT_STORAGE = {"local": {"shared": 0}, "local-lvm": {"shared": 0}, "local-zfs": {"shared": 0}}
DRIVE_RE = re.compile(r"^(ide\d|sata\d|scsi\d+|virtio\d+|efidisk0|tpmstate0|unused\d+)$")


def storage_shared(state: dict, volid: str) -> bool:
    store = volid.partition(":")[0]
    table = state.get("storage") or DEFAULT_STORAGE
    if store not in table:
        raise ApiError("storage '%s' does not exist" % store)
    return bool(table[store].get("shared"))


def local_resources(state: dict, config: dict, running: bool) -> tuple[list[str], dict]:
    """qemu-server QemuMigrate/Helpers.pm check_local_resources: (blockers, mapped). A mapped hostpci blocks a
    running VM unless its mapping is live-migration-capable; usb host=spice and serial=socket never block."""
    blockers, mapped = [], {}
    if config.get("ivshmem"):
        blockers.append("ivshmem")
    for key in sorted(config):
        fields = dict(f.partition("=")[::2] for f in str(config[key]).split(","))
        if re.match(r"^hostpci\d+$", key) and fields.get("mapping"):
            mapping = state["mapping_pci"].get(fields["mapping"]) or {}
            mapped[key] = {"name": fields["mapping"]}
            if mapping.get("live-migration-capable"):
                mapped[key]["live-migration"] = 1
                continue
            if not running:
                continue
        if re.match(r"^usb\d+$", key) and re.match(r"^spice$", fields.get("host", ""), re.IGNORECASE):
            continue
        if re.match(r"^serial\d+$", key) and config[key] == "socket":
            continue
        if re.match(r"^(usb|hostpci|serial|parallel|virtiofs)\d+$", key):
            blockers.append(key)
    return blockers, mapped


def migrate_precondition(state: dict, node: str, vmid: str) -> dict:
    """qemu-server API2/Qemu.pm migrate_vm_precondition: running, allowed_nodes / not_allowed_nodes (a node
    without an entry of a mapped device: unavailable-resources), local_disks (check_vm_disks_local: volumes on
    storage that is not shared, CD-ROMs included), local_resources, mapped-resources."""
    entry = vm(state, vmid, node)
    config = entry["config"]
    if config.get("lock"):  # API2/Qemu.pm migrate_vm_precondition: PVE::QemuConfig->check_lock
        raise ApiError("VM is locked (%s)" % config["lock"])
    running = entry.get("status") == "running"
    blockers, mapped = local_resources(state, config, running)
    allowed, not_allowed = [], {}
    for other in state["nodes"]:
        if other == local_node():
            continue
        missing = [key for key, info in sorted(mapped.items())
                   if other not in {parse_map(t).get("node") for t in
                                    (state["mapping_pci"].get(info["name"]) or {}).get("map", [])}]
        if missing:
            not_allowed[other] = {"unavailable-resources": missing}
        else:
            allowed.append(other)
    disks = []
    for key in sorted(config):
        if not DRIVE_RE.match(key):
            continue
        fields = str(config[key]).split(",")
        volid, cdrom = fields[0], "media=cdrom" in fields
        if volid in ("none", "cdrom") or (":" in volid and storage_shared(state, volid)):
            continue
        # QemuServer.pm foreach_volid: the attributes a volume carries (is_cloudinit, is_tpmstate, drivename)
        disks.append({"volid": volid, "cdrom": int(cdrom), "is_unused": int(key.startswith("unused")),
                      "is_cloudinit": int(bool(re.search(r"vm-\d+-cloudinit", volid))),
                      "is_tpmstate": int(key == "tpmstate0"), "drivename": key})
    return {"running": int(running), "allowed_nodes": allowed, "not_allowed_nodes": not_allowed,
            "local_disks": disks, "local_resources": blockers, "mapped-resources": sorted(mapped),
            "mapped-resource-info": mapped}


def new_task(state: dict, node: str, kind: str, vmid: str, error: str | None) -> str:
    """A finished worker: pve-common PVE/UPID.pm encode (UPID:node:pid:pstart:starttime:type:id:user:), its
    status as pve-manager API2/Tasks.pm read_task_status gives it (status stopped, exitstatus OK or the error)."""
    tasks = state.setdefault("tasks", {})
    upid = "UPID:%s:%08X:00000000:%08X:%s:%s:root@pam:" % (node, 4096 + len(tasks), len(tasks), kind, vmid)
    tasks[upid] = {"status": "stopped", "exitstatus": error or "OK", "node": node}
    return upid


def migrate(state: dict, node: str, kind: str, vmid: str, options: dict[str, list[str]]) -> str:
    """qemu-server API2/Qemu.pm migrate_vm + QemuMigrate.pm, pve-container API2/LXC.pm migrate_vm +
    LXC/Migrate.pm prepare: the API's own checks raise; the worker's checks end the task with the error."""
    entry = vm(state, vmid, node)
    if entry.get("type", "qemu") != kind:
        raise ApiError("Configuration file 'nodes/%s/%s/%s.conf' does not exist"
                       % (node, "qemu-server" if kind == "qemu" else "lxc", vmid))
    target = options.get("target", [""])[-1]
    if target == node:
        raise ApiError("target is local node.")
    if target not in state["nodes"]:
        raise ApiError("no such cluster node '%s'" % target)
    if entry.get("ha") and entry["ha"] != "ignored":
        raise ApiError("pvesh double: HA-managed guests are migrated by HA, not this double")
    running = entry.get("status") == "running"
    online = BOOLEANS.get(options.get("online", ["0"])[-1].lower(), 0)
    restart = BOOLEANS.get(options.get("restart", ["0"])[-1].lower(), 0)
    error = None
    if entry["config"].get("lock"):  # QemuMigrate.pm / LXC/Migrate.pm prepare: check_lock
        error = "migration aborted: %s is locked (%s)" % ("VM" if kind == "qemu" else "CT", entry["config"]["lock"])
    elif target in (state.get("offline") or []):
        error = "migration aborted: target node '%s' is not online" % target
    elif kind == "qemu":
        if running and not online:
            raise ApiError("can't migrate running VM without --online")
        blockers, _mapped = local_resources(state, entry["config"], running)
        disks = migrate_precondition(state, node, vmid)["local_disks"]
        if blockers:
            error = "migration aborted: can't migrate VM which uses local devices: %s" % ", ".join(blockers)
        elif running and disks:
            error = "migration aborted: can't live migrate attached local disks without with-local-disks option"
    else:
        if running and online:
            error = "lxc live migration is currently not implemented"
        elif running and not restart:
            error = "running container can only be migrated in restart mode"
        for key in sorted(entry["config"]):
            value = str(entry["config"][key])
            if re.match(r"^(rootfs|mp\d+)$", key) and value.split(",", maxsplit=1)[0].startswith("/") \
                    and "shared=1" not in value.split(","):
                error = error or "cannot migrate local bind mount point '%s'" % key
    if error is None:
        entry["node"] = target
        state.setdefault("log", []).append("migrate %s %s -> %s" % (vmid, node, target))
    upid = new_task(state, node, "qmigrate" if kind == "qemu" else "vzmigrate", vmid, error)
    save(state)
    return upid


def task_status(state: dict, node: str, upid: str) -> dict:
    task = (state.get("tasks") or {}).get(upid)
    if task is None or task["node"] != node:
        raise ApiError("no such task")
    return {"upid": upid, "node": node, "status": task["status"], "exitstatus": task["exitstatus"]}


def ha_manager_status(state: dict) -> dict:
    """pve-ha-manager API2/HA/Status.pm manager_status: {manager_status: {node_status, service_status}}. The
    double's CRM acts at once (ha_maintenance); a node the state lists offline is `unknown` (NodeStatus.pm)."""
    offline = set(state.get("offline") or [])
    nodes = {n: "unknown" if n in offline else (state.get("ha_nodes") or {}).get(n, "online") for n in state["nodes"]}
    services = {}
    for vmid, guest in sorted(state.get("vms", {}).items()):
        if guest.get("ha") and guest["ha"] != "ignored":
            sid = "%s:%s" % ("ct" if guest.get("type") == "lxc" else "vm", vmid)
            services[sid] = {"node": guest["node"],
                             "state": "started" if guest.get("status") == "running" else "stopped"}
            if guest.get("maintenance_node"):
                services[sid]["maintenance_node"] = guest["maintenance_node"]
    return {"manager_status": {"node_status": nodes, "service_status": services}}


def ha_maintenance(state: dict, action: str, node: str) -> None:
    """`ha-manager crm-command node-maintenance enable|disable NODE` (CLI/ha_manager.pm node-maintenance-set:
    check_node_exists, queue the CRM command) and what Manager.pm's CRM then does - here at once: enable sets the
    node to `maintenance` and migrates each HA service on it to the online node with the fewest services,
    remembering `maintenance_node`; disable sets it `online` and moves those services back."""
    if node not in state["nodes"]:
        raise ApiError("no such cluster node '%s'" % node)
    ha_nodes = state.setdefault("ha_nodes", {})
    guests = state.get("vms", {})
    if action == "enable":
        ha_nodes[node] = "maintenance"
        for vmid, guest in sorted(guests.items()):
            # Manager.pm next_state_stopped: a stopped service is not moved; only a started one (:1384-1388)
            if guest["node"] != node or not guest.get("ha") or guest["ha"] == "ignored" \
                    or guest.get("status") != "running":
                continue
            others = [n for n in state["nodes"] if n != node and n not in (state.get("offline") or [])
                      and ha_nodes.get(n, "online") == "online"]
            if not others:
                continue
            target = min(others, key=lambda n: (sum(1 for g in guests.values() if g["node"] == n and g.get("ha")), n))
            guest["node"], guest["maintenance_node"] = target, node
            state.setdefault("log", []).append("ha migrate %s %s -> %s" % (vmid, node, target))
    else:
        ha_nodes[node] = "online"
        for vmid, guest in sorted(guests.items()):
            if guest.get("maintenance_node") == node:
                state.setdefault("log", []).append("ha migrate %s %s -> %s" % (vmid, guest["node"], node))
                guest["node"] = node
                del guest["maintenance_node"]
    state.setdefault("log", []).append("ha maintenance %s %s" % (action, node))
    save(state)


def parse_args(argv: list[str]) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("--") or index + 1 >= len(argv):
            raise ApiError("400 unable to parse option '%s'" % arg)
        options.setdefault(arg[2:], []).append(argv[index + 1])
        index += 2
    options.pop("output-format", None)
    return options


def cluster_route(state: dict, parts: list[str]):
    """The read-only /cluster routes but mappings; None when the path is not one of them."""
    if parts == ["cluster", "resources"]:
        return [{"id": "%s/%s" % (vm_.get("type", "qemu"), vmid), "vmid": int(vmid), "type": vm_.get("type", "qemu"),
                 "node": vm_["node"], "status": vm_.get("status", "stopped")}
                for vmid, vm_ in sorted(state.get("vms", {}).items())]
    if parts == ["cluster", "status"]:
        # pve-manager PVE/API2/Cluster.pm status: the cluster entry (quorate) and one entry per node (online).
        # The state's `offline` lists nodes that are down; `quorate` defaults to a majority online.
        offline = set(state.get("offline") or [])
        members = [{"type": "node", "name": n, "online": int(n not in offline), "local": int(n == local_node())}
                   for n in state["nodes"]]
        quorate = state.get("quorate", 2 * (len(state["nodes"]) - len(offline)) > len(state["nodes"]))
        return [{"type": "cluster", "name": "cluster", "nodes": len(members), "quorate": int(quorate)}] + members
    if parts[:2] == ["cluster", "ceph"] and "ceph" not in state:
        # pve-manager PVE/Ceph/Tools.pm check_ceph_inited: no Ceph on this cluster
        raise ApiError("binary not installed: /usr/bin/ceph-mon")
    if parts == ["cluster", "ceph", "status"]:
        return {"health": {"status": state["ceph"].get("health", "HEALTH_OK")}}
    if parts == ["cluster", "ceph", "flags"]:
        return [{"name": f, "value": int(f in state["ceph"].get("flags", []))} for f in ("noout", "nodown", "pause")]
    return ha_route(state, parts)


def storage_index(state: dict) -> list[dict]:
    """pve-storage API2/Storage/Config.pm index: each storage's configuration (storage, type, shared, nodes)."""
    table = state.get("storage") or DEFAULT_STORAGE
    out = []
    for name, conf in sorted(table.items()):
        entry = {"storage": name, "type": conf.get("type", "dir"), "content": "images,rootdir"}
        entry.update({"shared": 1} if conf.get("shared") else {})
        entry.update({"nodes": conf["nodes"]} if conf.get("nodes") else {})
        out.append(entry)
    return out


def ha_route(state: dict, parts: list[str]):
    if parts == ["storage"]:
        return storage_index(state)
    if parts == ["cluster", "ha", "status", "manager_status"]:
        return ha_manager_status(state)
    # pve-ha-manager API2/HA/Rules.pm (Proxmox VE 9) and Groups.pm (8): only where the state has them
    if parts in (["cluster", "ha", "rules"], ["cluster", "ha", "groups"]) and "ha_" + parts[2] in state:
        return state["ha_" + parts[2]]
    if parts == ["cluster", "ha", "resources"]:
        # pve-ha-manager API2/HA/Resources.pm index: sid is `vm:ID` or `ct:ID`
        return [dict({"sid": "%s:%s" % ("ct" if g.get("type") == "lxc" else "vm", vmid), "state": g["ha"]},
                     **({"group": g["ha_group"]} if g.get("ha_group") else {}))
                for vmid, g in sorted(state.get("vms", {}).items()) if g.get("ha")]
    return None


def node_route(state: dict, parts: list[str], options: dict[str, list[str]], sysfs: str):
    """The read-only routes outside /cluster/mapping; None when the path is not one of them."""
    found = cluster_route(state, parts)
    if found is not None:
        return found
    if parts == ["nodes"]:
        return [{"node": node, "status": "online"} for node in state["nodes"]]
    if len(parts) == 3 and parts[0] == "nodes" and parts[2] in ("qemu", "lxc"):
        # qemu-server API2/Qemu.pm vmlist, pve-container API2/LXC.pm vmlist: the guests of that node
        return [{"vmid": int(vmid), "name": g["config"].get("name") or g["config"].get("hostname") or "",
                 "status": g.get("status", "stopped")}
                for vmid, g in sorted(state.get("vms", {}).items())
                if g["node"] == parts[1] and g.get("type", "qemu") == parts[2]]
    if len(parts) == 4 and parts[0] == "nodes" and parts[2:] == ["hardware", "pci"]:
        # pve-manager API2/Hardware/PCI.pm: proxyto 'node' - real pvesh asks that node; the double reads its tree.
        if parts[1] != local_node():
            sysfs = peer_sysfs(parts[1])
            if sysfs is None:
                raise ApiError("hostname lookup '%s' failed (pvesh double: no peer sysfs)" % parts[1])
        return hardware_pci(sysfs, options.get("pci-class-blacklist", [DEFAULT_CLASS_BLACKLIST])[-1])
    return None


def ceph_flag(state: dict, flag: str, options: dict[str, list[str]]) -> None:
    """pve-manager PVE/API2/Cluster/Ceph.pm update_flag: `ceph osd set|unset FLAG` by the boolean `value`."""
    if "ceph" not in state:
        raise ApiError("binary not installed: /usr/bin/ceph-mon")
    value = BOOLEANS.get(options.get("value", [""])[-1].lower())
    if value is None:
        raise ApiError("value: type check ('boolean') failed")
    flags = set(state["ceph"].get("flags", []))
    state["ceph"]["flags"] = sorted(flags | {flag} if value else flags - {flag})
    state.setdefault("log", []).append("ceph osd %s %s" % ("set" if value else "unset", flag))
    save(state)


def guest_route(state: dict, command: str, parts: list[str], options: dict[str, list[str]]) -> object:
    """/nodes/NODE/qemu/VMID/..., /nodes/NODE/lxc/VMID/..., tasks and the node's bulk actions."""
    if len(parts) == 5 and (parts[4] == "migrate" or parts[2:5:2] in (["lxc", "config"], ["tasks", "status"])):
        return migration_route(state, command, parts, options)
    if len(parts) == 5 and parts[2] == "qemu" and parts[4] == "config" and command in ("get", "set"):
        return vm_config(state, parts[1], parts[3], command, options)
    if len(parts) >= 5 and parts[2] == "qemu" and command == "get":
        return vm_views(state, parts[1], parts[3], parts[4:])
    if len(parts) == 3 and parts[2] in ("stopall", "startall") and command == "create":
        return bulk_power(state, parts[1], parts[2], options)
    raise ApiError("method '%s /%s' not implemented (pvesh double)" % (command.upper(), "/".join(parts)))


def migration_route(state: dict, command: str, parts: list[str], options: dict[str, list[str]]) -> object:
    """Migrations, their preconditions, a container's config and a task's status."""
    node, kind, name = parts[1], parts[2], parts[3]
    if parts[4] == "migrate" and kind in ("qemu", "lxc") and command == "create":
        return migrate(state, node, kind, name, options)
    if parts[4] == "migrate" and kind == "qemu" and command == "get":
        return migrate_precondition(state, node, name)
    if kind == "lxc" and command == "get":
        entry = vm(state, name, node)
        return dict(entry["config"], digest=vm_digest(entry["config"]))
    if kind == "tasks" and command == "get":
        return task_status(state, node, name)
    raise ApiError("method '%s /%s' not implemented (pvesh double)" % (command.upper(), "/".join(parts)))


def call(command: str, path: str, options: dict[str, list[str]]) -> object:
    state = load()
    sysfs = os.environ.get("PVESH_DOUBLE_SYSFS", "/sys")
    parts = [p for p in path.split("/") if p]
    routed = node_route(state, parts, options, sysfs) if command == "get" else None
    if routed is not None:
        return routed
    if parts[:1] == ["nodes"] and len(parts) >= 3:
        return guest_route(state, command, parts, options)
    if parts[:3] == ["cluster", "ceph", "flags"] and len(parts) == 4 and command == "set":
        return ceph_flag(state, parts[3], options)
    if parts[:3] != ["cluster", "mapping", "pci"] or len(parts) > 4:
        # pve-manager PVE/CLI/pvesh.pm: a path no API module handles
        raise ApiError("no '%s' handler for '%s'" % (command, path))
    mapping_id = parts[3] if len(parts) == 4 else None
    mappings = state["mapping_pci"]
    if command == "get" and mapping_id is None:
        return mapping_index(state, options.get("check-node", [None])[-1], sysfs)
    if command == "get":
        if mapping_id not in mappings:
            raise ApiError("mapping '%s' not found" % mapping_id)
        return dict(mappings[mapping_id], digest=digest(state))
    if command == "create" and mapping_id is None:
        mapping_id = options.pop("id", [""])[-1]
        if not CONFIGID_RE.match(mapping_id):
            raise ApiError("id: invalid configuration ID '%s'" % mapping_id)
        opts = check_config(options, create=True)
        if mapping_id in mappings:
            raise ApiError("create hardware mapping failed: pci ID '%s' already defined" % mapping_id)
        mappings[mapping_id] = opts
    elif command == "set" and mapping_id is not None:
        wanted_digest = options.pop("digest", [None])[-1]
        delete = [k for k in re.split(r"[;,\s]+", options.pop("delete", [""])[-1]) if k]
        if wanted_digest and wanted_digest != digest(state):  # pve-common Tools.pm assert_if_modified
            raise ApiError("update hardware mapping failed: detected modified configuration - file changed by "
                           "other user? Try again.")
        if mapping_id not in mappings:
            raise ApiError("update hardware mapping failed: pci ID '%s' does not exist" % mapping_id)
        opts = check_config(options, create=False) if options else {}
        if "map" not in opts:  # pve-manager Cluster/Mapping/PCI.pm update: check_config in create mode
            raise ApiError("update hardware mapping failed: missing value for required option 'map'")
        for key in delete:  # pve-common SectionConfig.pm delete_from_config
            if key not in OPTIONAL | {"map"}:
                raise ApiError("update hardware mapping failed: no such option '%s'" % key)
            if key not in OPTIONAL:
                raise ApiError("update hardware mapping failed: unable to delete required option '%s'" % key)
            if key in opts:
                raise ApiError("update hardware mapping failed: cannot set and delete property '%s' at the same "
                               "time!" % key)
            mappings[mapping_id].pop(key, None)
        mappings[mapping_id].update(opts)
    elif command == "delete" and mapping_id is not None:
        mappings.pop(mapping_id, None)
    else:
        raise ApiError("method '%s %s' not implemented (pvesh double)" % (command.upper(), path))
    save(state)
    return None


def quorumtool(state: dict) -> str:
    """`corosync-quorumtool -s` of the node (corosync tools/corosync-quorumtool.c, votequorum(5)): expected votes
    are every node's (state `votes`, default 1) plus a QDevice's (`qdevice_votes`); quorum is half of them plus
    one; total votes are the online nodes' plus the QDevice's."""
    offline = set(state.get("offline") or [])
    votes = {n: (state.get("votes") or {}).get(n, 1) for n in state["nodes"]}
    qdevice = state.get("qdevice_votes", 0)
    expected = sum(votes.values()) + qdevice
    total = sum(v for n, v in votes.items() if n not in offline) + qdevice
    quorum = expected // 2 + 1
    quorate = "Yes" if total >= quorum else "No"
    lines = ["Quorum information", "------------------", "Quorum provider:  corosync_votequorum",
             "Nodes:            %d" % (len(votes) - len(offline)), "Quorate:          %s" % quorate,
             "", "Votequorum information", "----------------------", "Expected votes:   %d" % expected,
             "Highest expected: %d" % expected, "Total votes:      %d" % total, "Quorum:           %d  " % quorum,
             "Flags:            %s%s" % ("Quorate" if total >= quorum else "", " Qdevice" if qdevice else ""), "",
             "Membership information", "----------------------", "    Nodeid      Votes Name"]
    for index, node in enumerate(state["nodes"]):
        if node not in offline:
            mine = " (local)" if node == local_node() else ""
            lines.append("0x%08x %10d %s%s" % (index + 1, votes[node], node, mine))
    if qdevice:
        lines.append("0x00000000 %10d Qdevice" % qdevice)
    return "\n".join(lines)


def ha_manager_main(argv: list[str]) -> int:
    """`ha-manager crm-command node-maintenance enable|disable NODE`, the one ha-manager command doubled."""
    if argv[1:3] != ["crm-command", "node-maintenance"] or len(argv) != 5 or argv[3] not in ("enable", "disable"):
        print("usage: ha-manager crm-command node-maintenance enable|disable NODE (test double)", file=sys.stderr)
        return 255
    try:
        ha_maintenance(load(), argv[3], argv[4])
    except ApiError as err:
        print(str(err).rstrip("\n"), file=sys.stderr)
        return 255
    return 0


def other_main(argv: list[str]) -> int | None:
    """ha-manager and corosync-quorumtool; None for pvesh and qm."""
    if argv[:1] == ["ha-manager"]:
        return ha_manager_main(argv)
    if argv[:1] == ["corosync-quorumtool"]:
        print(quorumtool(load()) if argv[1:] == ["-s"] else "usage: corosync-quorumtool -s (test double)")
        return 0 if argv[1:] == ["-s"] else 255
    return None


def main(argv: list[str]) -> int:
    done = other_main(argv)
    if done is not None:
        return done
    if argv[:2] == ["qm", "showcmd"] and len(argv) == 3:
        try:
            print(qm_showcmd(load(), argv[2], os.environ.get("PVESH_DOUBLE_SYSFS", "/sys")))
        except ApiError as err:
            print(str(err).rstrip("\n"), file=sys.stderr)
            return 255
        return 0
    if len(argv) < 2 or argv[0] not in ("get", "set", "create", "delete"):
        print("usage: pvesh get|set|create|delete API_PATH [OPTIONS] (pvesh test double)", file=sys.stderr)
        return 255
    try:
        result = call(argv[0], argv[1], parse_args(argv[2:]))
    except ApiError as err:
        print(str(err).rstrip("\n"), file=sys.stderr)
        return 255
    if result is not None:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
