"""TEST DOUBLE of the kernel's SR-IOV sysfs and of iproute2's `ip`, on a fake tree.

It stands in for what cannot run here without a real SR-IOV card (the real-boot suite is where
a real kernel answers). Each rule it enforces, and where the real one lives:
- drivers/pci/iov.c sriov_numvfs_store(): writing the count it already has is a no-op; a count
  above sriov_totalvfs fails with ERANGE; a non-zero count over another non-zero count fails
  with EBUSY ("%d VFs already enabled. Disable before enabling %d VFs"); 0 removes every VF.
- drivers/pci/iov.c pci_iov_add_virtfn(): each VF gets a PCI function below the PF's bus with
  `physfn` and the PF a `virtfnN` link; it is probed only when sriov_drivers_autoprobe is 1.
- drivers/pci/pci-driver.c / bus.c: driver_override, unbind and drivers_probe as vfio_bind uses them;
  pci_device_can_probe(): a VF without driver_override is probed (by its VF driver) only while its
  PF's sriov_drivers_autoprobe is 1 - also through drivers_probe.
- iproute2 ip/ipaddress.c print_vfinfo(): `ip -j -d link show dev PF` lists `vfinfo_list` with `vf`,
  `address`, `vlan_list` [{vlan}], `spoofchk`, `link_state`, `trust`; `ip link set dev PF vf N ...`
  sets them and fails for an N beyond the PF's VFs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil


class SriovKernel:
    """Writes through sysfs for one fake tree; `ip` is its command runner."""

    def __init__(self, sysfs: str, vf_id: str = "8086:154c", vf_driver: str = "iavf") -> None:
        self.sysfs = sysfs
        self.vf_id = vf_id
        self.vf_driver = vf_driver
        self.writes: list[tuple[str, str]] = []
        self.ip_calls: list[list[str]] = []
        self.up: set[str] = set()
        self.addresses: dict[str, list[str]] = {}
        self.vf_state: dict[str, dict[int, dict]] = {}
        self.next_group = 100
        for address in os.listdir(self.pci("devices")):  # VFs the fake tree was built with
            count = int((self._read(self.pci("devices", address, "sriov_numvfs")) or "0").strip() or 0)
            if count:
                self.vf_state[address] = {i: {"address": "00:00:00:00:00:00", "vlan": 0, "spoofchk": True,
                                              "trust": False, "link_state": "auto"} for i in range(count)}

    # --- sysfs -----------------------------------------------------------------
    def pci(self, *parts: str) -> str:
        return os.path.join(self.sysfs, "bus", "pci", *parts)

    def __call__(self, path: str, value: str) -> None:
        self.writes.append((os.path.relpath(path, self.sysfs), value))
        name = os.path.basename(path)
        if name == "sriov_numvfs":
            self._numvfs(os.path.dirname(os.path.realpath(path)), int(value))
        elif name == "unbind":
            link = self.pci("devices", value, "driver")
            if os.path.islink(link):
                os.unlink(link)
        elif name == "drivers_probe":
            override = self._read(self.pci("devices", value, "driver_override")) or ""
            if override.strip():
                self._bind(value, override.strip())
            elif self._autoprobes(value):
                self._bind(value, self.vf_driver)
        else:
            with open(path, "w", encoding="ascii") as handle:
                handle.write(value)

    @staticmethod
    def _read(path: str) -> str | None:
        try:
            with open(path, encoding="ascii") as handle:
                return handle.read()
        except OSError:
            return None

    def _autoprobes(self, address: str) -> bool:
        physfn = self.pci("devices", address, "physfn")
        if not os.path.islink(physfn):
            return False  # only VFs are modelled; another device keeps what it has
        return (self._read(os.path.join(physfn, "sriov_drivers_autoprobe")) or "1").strip() == "1"

    def _numvfs(self, pf_dir: str, wanted: int) -> None:
        path = os.path.join(pf_dir, "sriov_numvfs")
        current = int(self._read(path) or 0)
        total = int(self._read(os.path.join(pf_dir, "sriov_totalvfs")) or 0)
        if wanted == current:
            return
        if wanted > total:
            raise OSError(errno.ERANGE, "Numerical result out of range", path)
        if wanted and current:
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        if wanted == 0:
            for name in [n for n in os.listdir(pf_dir) if n.startswith("virtfn")]:
                address = os.path.basename(os.path.realpath(os.path.join(pf_dir, name)))
                os.unlink(os.path.join(pf_dir, name))
                self._remove_vf(address)
            self.vf_state.pop(os.path.basename(pf_dir), None)
        else:
            pf = os.path.basename(pf_dir)
            probe = (self._read(os.path.join(pf_dir, "sriov_drivers_autoprobe")) or "1").strip() == "1"
            for index in range(wanted):
                self._add_vf(pf_dir, pf, index, probe)
            self.vf_state[pf] = {i: {"address": "00:00:00:00:00:00", "vlan": 0, "spoofchk": True, "trust": False,
                                     "link_state": "auto"} for i in range(wanted)}
        with open(path, "w", encoding="ascii") as handle:
            handle.write("%d\n" % wanted)

    def _add_vf(self, pf_dir: str, pf: str, index: int, probe: bool) -> None:
        bus = pf.rsplit(":", 1)[0]
        address = "%s:%02x.%d" % (bus, 2 + index // 8, index % 8)
        vf_dir = os.path.join(os.path.dirname(pf_dir), address)
        os.makedirs(vf_dir)
        vendor, device = self.vf_id.split(":")
        for attr, value in (("vendor", "0x" + vendor), ("device", "0x" + device), ("class", "0x020000")):
            with open(os.path.join(vf_dir, attr), "w", encoding="ascii") as handle:
                handle.write(value + "\n")
        os.symlink(os.path.relpath(pf_dir, vf_dir), os.path.join(vf_dir, "physfn"))
        os.symlink(os.path.relpath(vf_dir, pf_dir), os.path.join(pf_dir, "virtfn%d" % index))
        os.symlink(os.path.relpath(vf_dir, self.pci("devices")), self.pci("devices", address))
        group = os.path.join(self.sysfs, "kernel", "iommu_groups", str(self.next_group))
        self.next_group += 1
        os.makedirs(os.path.join(group, "devices"))
        os.symlink(os.path.relpath(vf_dir, os.path.join(group, "devices")), os.path.join(group, "devices", address))
        os.symlink(os.path.relpath(group, vf_dir), os.path.join(vf_dir, "iommu_group"))
        if probe:
            self._bind(address, self.vf_driver)

    def _bind(self, address: str, driver: str) -> None:
        drv = self.pci("drivers", driver)
        os.makedirs(drv, exist_ok=True)
        link = self.pci("devices", address, "driver")
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(os.path.relpath(drv, os.path.realpath(os.path.dirname(link))), link)

    def _remove_vf(self, address: str) -> None:
        vf_dir = os.path.realpath(self.pci("devices", address))
        group = os.path.realpath(os.path.join(vf_dir, "iommu_group"))
        shutil.rmtree(vf_dir)
        os.unlink(self.pci("devices", address))
        os.unlink(os.path.join(group, "devices", address))
        net = os.path.join(self.sysfs, "class", "net")
        for name in os.listdir(net) if os.path.isdir(net) else []:
            if not os.path.exists(os.path.join(net, name)):  # the VF's interface went with it
                os.unlink(os.path.join(net, name))

    # --- ip ----------------------------------------------------------------------
    def pf_of(self, interface: str) -> str | None:
        for address in os.listdir(self.pci("devices")):
            if os.path.isdir(self.pci("devices", address, "net", interface)):
                return address
        return None

    def ip(self, args: list[str]) -> tuple[int, str, str]:
        self.ip_calls.append(list(args))
        if args[:4] == ["-j", "-d", "link", "show"]:
            name = args[-1]
            pf = self.pf_of(name)
            entry = {"ifname": name, "flags": ["BROADCAST", "MULTICAST"] + (["UP"] if name in self.up else [])}
            if pf in self.vf_state:
                entry["vfinfo_list"] = [dict(state, vf=i, vlan_list=[{"vlan": state["vlan"]}] if state["vlan"] else [])
                                        for i, state in sorted(self.vf_state[pf].items())]
            return 0, json.dumps([entry]), ""
        if args[:3] == ["-j", "addr", "show"]:
            name = args[-1]
            info = [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1]), "scope": "global"}
                    for a in self.addresses.get(name, [])]
            return 0, json.dumps([{"ifname": name, "addr_info": info}]), ""
        if args[:3] == ["link", "set", "dev"] and args[4:] == ["up"]:
            self.up.add(args[3])
            return 0, "", ""
        if args[:3] == ["link", "set", "dev"] and args[4] == "vf":
            return self._set_vf(self.pf_of(args[3]), int(args[5]), args[6:])
        return 2, "", "ip double: unsupported: %s" % " ".join(args)

    def _set_vf(self, pf: str | None, index: int, args: list[str]) -> tuple[int, str, str]:
        state = (self.vf_state.get(pf) or {}).get(index)
        if state is None:
            return 2, "", "RTNETLINK answers: Invalid argument"
        for key, value in zip(args[::2], args[1::2]):
            if key == "mac":
                state["address"] = value
            elif key == "vlan":
                state["vlan"] = int(value)
            elif key in ("spoofchk", "trust"):
                state[key] = value == "on"
            elif key == "state":
                state["link_state"] = value
        return 0, "", ""
