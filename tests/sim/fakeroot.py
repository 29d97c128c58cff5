"""Turns a hardware profile (YAML) into a fake sysfs/procfs tree.

The tree mirrors the kernel's layout - device directories under
sys/devices, relative symlinks from sys/bus/pci/devices, drivers, IOMMU
groups and sys/class/net - so code that reads link basenames answers the same
on it as on a real node. The same profiles feed unit tests and containers.

Layout written below OUT:
  sys/ proc/       the fake kernel trees (sysfs_root, procfs_root)
  root/            files of the node's file system (etc_root in unit tests):
                   /etc, /boot/grub, pci.ids and modules.alias for the profile
  commands.json    what `ip -j ...`, `proxmox-boot-tool status` and `dmesg`
                   print on such a node, answered by FakeNode.run
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
from pathlib import Path

import yaml

PROFILES = Path(__file__).resolve().parent / "profiles"

GRUB_DEFAULT = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="Proxmox VE"
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
"""


@functools.cache
def parsed(name: str) -> dict:
    """A profile file parsed once per process (the unit tests load profiles thousands of times)."""
    return yaml.load((PROFILES / ("%s.yml" % name)).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.yml"))


def load(name: str) -> dict:
    data = copy.deepcopy(parsed(name))  # each caller may change its copy
    data["name"] = name
    for dev in data["devices"]:
        vendor, device = dev["id"].split(":")
        dev.setdefault("subsystem", "%s:0000" % vendor)
        dev.setdefault("revision", "00")
        dev.setdefault("driver", None)
        dev.setdefault("netdevs", [])
        for net in dev["netdevs"]:
            net.setdefault("state", "up")
            net.setdefault("addresses", [])
    data.setdefault("interfaces", [])
    data.setdefault("files", {})
    return data


def masters(profile: dict) -> dict[str, tuple[str, str]]:
    """lower interface -> (upper name, kind)."""
    return {low: (i["name"], i["kind"]) for i in profile["interfaces"] for low in i["lowers"]}


def node_files(profile: dict) -> dict[str, str]:
    """Files the node's own file system holds (paths absolute)."""
    files = dict(profile["files"])
    if profile["boot_loader"] == "grub":
        files.setdefault("/etc/default/grub", GRUB_DEFAULT)
    return files


def modalias(dev: dict) -> str:
    vendor, device = (int(x, 16) for x in dev["id"].split(":"))
    sv, sd = (int(x, 16) for x in dev["subsystem"].split(":"))
    cls = dev["class"]
    return "pci:v%08Xd%08Xsv%08Xsd%08Xbc%ssc%si%s" % (
        vendor, device, sv, sd, cls[0:2].upper(), cls[2:4].upper(), cls[4:6].upper())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(target, path.parent))


def _device_dirs(profile: dict, sys: Path) -> dict[str, Path]:
    by_addr = {d["address"]: d for d in profile["devices"]}
    dirs: dict[str, Path] = {}

    def resolve(address: str) -> Path:
        if address not in dirs:
            dev = by_addr[address]
            parent = dev.get("parent") or dev.get("physfn")
            base = resolve(parent).parent if dev.get("physfn") else (
                resolve(parent) if parent else sys / "devices" / ("pci%s:00" % address[:4]))
            dirs[address] = base / address
        return dirs[address]

    for address in by_addr:
        resolve(address)
    return dirs


def _write_netdev(sys: Path, directory: Path, name: str, mac: str | None, state: str, speed,
                  ups: dict, profile: dict, permanent_mac: str | None = None) -> None:
    _write(directory / "address", "%s\n" % (mac or "00:00:00:00:00:00"))
    if permanent_mac:
        _write(directory / "bonding_slave" / "perm_hwaddr", "%s\n" % permanent_mac)
    _write(directory / "operstate", "%s\n" % state)
    _write(directory / "mtu", "1500\n")
    if speed is not None and state == "up":
        _write(directory / "speed", "%d\n" % speed)
    _link(sys / "class" / "net" / name, directory)
    if name in ups:
        upper, kind = ups[name]
        upper_dir = sys / "devices" / "virtual" / "net" / upper
        _link(directory / ("upper_%s" % upper), upper_dir)
        if kind in ("bridge", "bond"):
            _link(directory / "master", upper_dir)
        elif kind == "ovs":
            # An Open vSwitch port: no link to its bridge, only to the datapath device.
            (directory / ("upper_%s" % upper)).unlink()
            ovs_system = sys / "devices" / "virtual" / "net" / "ovs-system"
            ovs_system.mkdir(parents=True, exist_ok=True)
            _link(directory / "master", ovs_system)
            _link(directory / "upper_ovs-system", ovs_system)


def build(profile: dict, out: Path, hostname: str | None = None) -> Path:
    """Write the fake tree for `profile` below `out` and return `out`."""
    sys, proc, root = out / "sys", out / "proc", out / "root"
    ups = masters(profile)
    dirs = _device_dirs(profile, sys)
    for dev in profile["devices"]:
        d = dirs[dev["address"]]
        vendor, device = dev["id"].split(":")
        sv, sd = dev["subsystem"].split(":")
        for attr, value in (("vendor", "0x" + vendor), ("device", "0x" + device),
                            ("subsystem_vendor", "0x" + sv), ("subsystem_device", "0x" + sd),
                            ("class", "0x" + dev["class"]), ("revision", "0x" + dev["revision"]),
                            ("numa_node", str(dev.get("numa", -1))), ("modalias", modalias(dev)),
                            ("irq", str(dev.get("irq", 16)))):  # every real device has one (0: none)
            _write(d / attr, value + "\n")
        if dev.get("reset"):
            _write(d / "reset_method", " ".join(dev["reset"]) + "\n")
        _link(sys / "bus" / "pci" / "devices" / dev["address"], d)
        if dev["driver"]:
            drv = sys / "bus" / "pci" / "drivers" / dev["driver"]
            drv.mkdir(parents=True, exist_ok=True)
            _link(d / "driver", drv)
            _link(drv / dev["address"], d)
        if profile["iommu"] and dev.get("group") is not None:
            group = sys / "kernel" / "iommu_groups" / str(dev["group"])
            _link(group / "devices" / dev["address"], d)
            _link(d / "iommu_group", group)
        if dev.get("sriov"):
            _write(d / "sriov_totalvfs", "%d\n" % dev["sriov"]["total"])
            _write(d / "sriov_numvfs", "%d\n" % dev["sriov"]["num"])
            if dev["sriov"].get("vf_device"):  # the VF device ID the PF's VFs will have (as the kernel shows it)
                _write(d / "sriov_vf_device", "%s\n" % dev["sriov"]["vf_device"])
        if dev.get("physfn"):
            pf = dirs[dev["physfn"]]
            _link(d / "physfn", pf)
            index = len([p for p in pf.iterdir() if p.name.startswith("virtfn")])
            _link(pf / ("virtfn%d" % index), d)
        for net in dev["netdevs"]:
            # virtio-net puts its interface one level down: <device>/virtio1/net/<name>
            base = d / net["subdir"] if net.get("subdir") else d
            _write_netdev(sys, base / "net" / net["name"], net["name"], net.get("mac"), net["state"],
                          net.get("speed"), ups, profile, net.get("permanent_mac"))
    for iface in profile["interfaces"]:
        d = sys / "devices" / "virtual" / "net" / iface["name"]
        _write_netdev(sys, d, iface["name"], None, "up", None, ups, profile)
        if iface["kind"] == "bridge":
            (d / "bridge").mkdir(exist_ok=True)
        if iface["kind"] == "bond":
            (d / "bonding").mkdir(exist_ok=True)
        for low in iface["lowers"]:
            _link(d / ("lower_%s" % low), sys / "class" / "net" / low)
    _write_storage(profile.get("storage"), sys, proc, dirs)
    for module in profile.get("modules_loaded", []):
        (sys / "module" / module).mkdir(parents=True, exist_ok=True)
    if profile["efi"]:
        (sys / "firmware" / "efi").mkdir(parents=True, exist_ok=True)
    (sys / "kernel" / "iommu_groups").mkdir(parents=True, exist_ok=True)

    cpu = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}[profile["cpu"]]
    _write(proc / "cpuinfo", "processor\t: 0\nvendor_id\t: %s\nmodel name\t: simulated\n" % cpu)
    _write(proc / "cmdline", profile["cmdline"] + "\n")
    _write(proc / "sys" / "kernel" / "osrelease", profile["kernel"] + "\n")
    _write(proc / "sys" / "kernel" / "hostname", (hostname or profile["name"]) + "\n")
    _write(proc / "modules", "".join("%s 16384 0 - Live 0x0\n" % m for m in profile.get("modules_loaded", [])))

    for path, text in node_files(profile).items():
        _write(root / path.lstrip("/"), text)
    if profile["boot_loader"] == "grub":
        _write(root / "boot" / "grub" / "grub.cfg", "# generated by the fake tree builder\n")
    _write(root / "usr" / "share" / "misc" / "pci.ids", pci_ids(profile))
    _write(root / "lib" / "modules" / profile["kernel"] / "modules.alias", modules_alias(profile))
    _write(out / "commands.json", json.dumps(commands(profile), indent=1))
    return out


# Virtual file systems every node mounts; they hold no block device.
_VIRTUAL_MOUNTS = ["/proc proc proc", "/sys sysfs sysfs", "/dev devtmpfs udev", "/run tmpfs tmpfs"]


def _write_storage(storage: dict | None, sys: Path, proc: Path, dirs: dict[str, Path]) -> None:
    """Block devices below their PCI functions, dm/md stacks, mountinfo and swaps.

    Without a `storage` section nothing is written, as on a node whose /proc cannot be read.
    """
    if storage is None:
        return
    block_dirs: dict[str, Path] = {}

    def add_block(name: str, directory: Path, dev: str) -> None:
        _write(directory / "dev", dev + "\n")
        _link(sys / "class" / "block" / name, directory)
        _link(sys / "dev" / "block" / dev, directory)
        block_dirs[name] = directory

    for disk in storage.get("disks", []):
        if disk.get("subsystem"):  # NVMe native multipath: the namespace hangs off its subsystem
            subsys = sys / "devices" / "virtual" / "nvme-subsystem" / disk["subsystem"]
            controller = dirs[disk["pci"]] / "nvme" / disk["controller"]
            controller.mkdir(parents=True, exist_ok=True)
            _link(subsys / disk["controller"], controller)
            directory = subsys / disk["name"]
        elif disk.get("sysfs"):  # below no PCI function: an iSCSI session, ACPI platform storage
            directory = sys / "devices" / disk["sysfs"] / disk["name"]
        else:
            directory = dirs[disk["pci"]] / disk.get("via", "host0/block") / disk["name"]
        add_block(disk["name"], directory, disk["dev"])
        for part, dev in disk.get("partitions", {}).items():
            add_block(part, directory / part, dev)
    for stack in storage.get("stacked", []):
        directory = sys / "devices" / "virtual" / "block" / stack["name"]
        add_block(stack["name"], directory, stack["dev"])
        if stack.get("dm_name"):
            _write(directory / "dm" / "name", stack["dm_name"] + "\n")
        for slave in stack["slaves"]:
            _link(directory / "slaves" / slave, block_dirs[slave])
    for fsid, members in storage.get("btrfs", {}).items():
        for member in members:
            _link(sys / "fs" / "btrfs" / fsid / "devices" / member, block_dirs[member])
    lines = ["%d 1 0:%d / %s rw,nosuid - %s" % (20 + i, 20 + i, m.split()[0], " ".join(m.split()[1:]) + " rw")
             for i, m in enumerate(_VIRTUAL_MOUNTS)]
    for i, mount in enumerate(storage.get("mounts", [])):
        lines.append("%d 1 %s / %s rw,relatime shared:%d - %s %s rw" % (
            30 + i, mount["dev"], mount["point"], i + 1, mount["fstype"], mount["source"]))
    _write(proc / "self" / "mountinfo", "\n".join(lines) + "\n")
    swaps = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"]
    swaps += ["%s\tpartition\t8388604\t\t0\t\t-2" % path for path in storage.get("swaps", [])]
    _write(proc / "swaps", "\n".join(swaps) + "\n")


def pci_ids(profile: dict) -> str:
    lines = ["# pci.ids written for profile %s" % profile["name"]]
    for vendor, vname in sorted(profile["vendors"].items()):
        lines.append("%s  %s" % (vendor, vname))
        seen = set()
        for dev in profile["devices"]:
            v, d = dev["id"].split(":")
            if v == vendor and d not in seen and dev.get("name"):
                seen.add(d)
                lines.append("\t%s  %s" % (d, dev["name"]))
    lines += ["C 01  Mass storage controller", "\t06  SATA controller", "\t08  Non-Volatile memory controller",
              "C 02  Network controller", "\t00  Ethernet controller", "C 06  Bridge",
              "\t00  Host bridge", "\t04  PCI bridge", "C 0c  Serial bus controller", "\t03  USB controller"]
    return "\n".join(lines) + "\n"


def modules_alias(profile: dict) -> str:
    lines = ["# Aliases extracted from modules themselves."]
    for dev in profile["devices"]:
        if dev["driver"] and dev["driver"] != "pcieport":
            v, d = dev["id"].upper().split(":")
            line = "alias pci:v0000%sd0000%ssv*sd*bc*sc*i* %s" % (v, d, dev["driver"])
            if line not in lines:  # one line per alias, as depmod writes it, however many cards
                lines.append(line)
    return "\n".join(lines) + "\n"


def l3_interfaces(profile: dict) -> list[dict]:
    """Every interface with its addresses, MAC and state, in profile order."""
    found = []
    for dev in profile["devices"]:
        for net in dev["netdevs"]:
            found.append({"name": net["name"], "mac": net.get("mac"), "state": net["state"],
                          "addresses": net["addresses"]})
    for iface in profile["interfaces"]:
        found.append({"name": iface["name"], "mac": None, "state": "up",
                      "addresses": iface.get("addresses", []), "kind": iface["kind"],
                      "default_via": iface.get("default_via"), "default_via6": iface.get("default_via6")})
    return found


def commands(profile: dict) -> dict[str, str]:
    """What the node's commands print, in their real formats."""
    links, v4, v6 = [], [], []
    for index, iface in enumerate(l3_interfaces(profile), start=2):
        infos = []
        for cidr in iface["addresses"]:
            net = ipaddress.ip_interface(cidr)
            infos.append({"family": "inet6" if net.version == 6 else "inet", "local": str(net.ip),
                          "prefixlen": net.network.prefixlen, "scope": "global"})
        links.append({"ifindex": index, "ifname": iface["name"], "operstate": iface["state"].upper(),
                      "address": iface["mac"] or "02:00:00:00:00:%02x" % index, "addr_info": infos})
        if iface.get("default_via"):
            v4.append({"dst": "default", "gateway": iface["default_via"], "dev": iface["name"], "flags": []})
        if iface.get("default_via6"):
            v6.append({"dst": "default", "gateway": iface["default_via6"], "dev": iface["name"], "flags": []})
    # `ip -j -d link show`: the same links, a PF with its VFs' settings (vfinfo_list, iproute2 print_vfinfo) -
    # a profile's sriov.vf_settings, else what the kernel gives a new VF (no MAC, no VLAN, spoof check on).
    vfinfo = {}
    for dev in profile["devices"]:
        sriov = dev.get("sriov") or {}
        if sriov.get("num") and dev.get("netdevs"):
            given = {s["vf"]: s for s in sriov.get("vf_settings") or []}
            vfinfo[dev["netdevs"][0]["name"]] = [dict({
                "vf": index, "address": "00:00:00:00:00:00", "spoofchk": True, "link_state": "auto", "trust": False},
                **given.get(index, {})) for index in range(sriov["num"])]
    details = [dict(link, link_type="ether", **({"vfinfo_list": vfinfo[link["ifname"]]}
                                                if link["ifname"] in vfinfo else {})) for link in links]
    return {
        "ip -j -d link show": json.dumps(details),
        "ip -j addr show": json.dumps(links),
        "ip -j -4 route show default": json.dumps(v4),
        "ip -j -6 route show default": json.dumps(v6),
        "proxmox-boot-tool status": profile.get("proxmox_boot_tool_status"),
        "dmesg": profile.get("dmesg"),
        "zpool status -P": (profile.get("storage") or {}).get("zpool_status"),
        **ovs_commands(profile),
    }


def ovs_commands(profile: dict) -> dict[str, str]:
    """`ovs-vsctl list-br` and `list-ifaces` for the profile's Open vSwitch bridges (kind ovs)."""
    bridges = sorted({i["name"] for i in profile["interfaces"] if i["kind"] == "ovs"})
    if not bridges or profile.get("ovs_vsctl") is False:
        return {}
    members = {b: sorted([low for i in profile["interfaces"] if i["name"] == b for low in i["lowers"]]
                         + [i["name"] for i in profile["interfaces"] if i.get("bridge") == b]) for b in bridges}
    found = {"ovs-vsctl list-br": "".join(b + "\n" for b in bridges)}
    found.update({"ovs-vsctl list-ifaces %s" % b: "".join(m + "\n" for m in members[b]) for b in bridges})
    return found


class FakeNode:
    """A fake tree plus the command runner answering like that node."""

    def __init__(self, profile: dict, out: Path) -> None:
        self.profile = profile
        self.out = build(profile, out)
        self.commands = json.loads((out / "commands.json").read_text())
        self.calls: list[list[str]] = []

    @property
    def roots(self) -> dict[str, str]:
        return {"sysfs_root": str(self.out / "sys"), "procfs_root": str(self.out / "proc"),
                "etc_root": str(self.out / "root")}

    def which(self, name: str) -> str | None:
        known = {key.split()[0] for key, value in self.commands.items() if value is not None}
        return "/usr/sbin/%s" % name if name in known else None

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        key = " ".join([os.path.basename(argv[0])] + list(argv[1:]))
        if self.commands.get(key) is None:
            return 127, "", "%s: not simulated" % key
        return 0, self.commands[key], ""
