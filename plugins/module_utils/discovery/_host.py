# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-level facts: IOMMU state, CPU, kernel, boot loader, vfio modules."""

from __future__ import annotations

import os
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader

VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core", "vfio_virqfd")

# Kernel log lines that settle whether interrupt remapping is on.
_IR_DISABLED = re.compile(r"(IRQ remapping was disabled|Not enabling interrupt remapping"
                          r"|Failed to enable irq remapping|DMAR-IR: IRQ remapping disabled"
                          r"|Disabling IRQ remapping)", re.IGNORECASE)
_IR_ON_LINE = re.compile(r"(DMAR-IR: Enabled IRQ remapping|AMD-Vi: Interrupt remapping enabled)", re.IGNORECASE)

# `proxmox-boot-tool status` prints one line per ESP: "<UUID> is configured with: uefi (versions: ...)"
_PBT_ESP = re.compile(r"^(\S+) is configured with: (\w+)", re.MULTILINE)


def kernel_version(release: str | None) -> tuple[int, int]:
    match = re.match(r"^(\d+)\.(\d+)", release or "")
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def ssh_server_address(environ: dict[str, str]) -> str | None:
    """The node's address of the SSH connection this module runs under (SSH_CONNECTION's third field)."""
    fields = environ.get("SSH_CONNECTION", "").split()
    return fields[2] if len(fields) == 4 else None


def corosync_addresses(text: str | None) -> list[str]:
    """Addresses named by ringX_addr / linkX_addr in corosync.conf, sorted."""
    found = set()
    for match in re.finditer(r"^\s*(?:ring|link)\d+_addr\s*:\s*(\S+)", text or "", re.MULTILINE):
        found.add(match.group(1))
    return sorted(found)


def cpu_vendor(reader: TreeReader, procfs_root: str) -> str | None:
    """"intel", "amd" or the raw vendor_id from /proc/cpuinfo."""
    for line in reader.lines(os.path.join(procfs_root, "cpuinfo")) or []:
        if line.startswith("vendor_id"):
            raw = line.split(":", 1)[1].strip()
            return {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}.get(raw, raw)
    return None


def interrupt_remapping(kernel_log: str | None) -> bool | None:
    """True/False when the kernel log says so, None when it cannot be told."""
    if not kernel_log:
        return None
    if _IR_ON_LINE.search(kernel_log):
        return True
    if _IR_DISABLED.search(kernel_log):
        return False
    return None


def loaded_vfio_modules(reader: TreeReader, sysfs_root: str, procfs_root: str) -> list[str]:
    """vfio modules present, loaded (/proc/modules) or built in (/sys/module)."""
    present = set()
    for line in reader.lines(os.path.join(procfs_root, "modules"), warn=False) or []:
        present.add(line.split(" ", 1)[0])
    present.update(reader.listdir(os.path.join(sysfs_root, "module")))
    return sorted(m for m in present if m in VFIO_MODULES)


def boot_loader(reader: TreeReader, sysfs_root: str, etc_root: str, pbt_status: str | None) -> dict:
    """Decide GRUB vs systemd-boot, and say how it was decided.

    Proxmox VE boots ZFS-on-UEFI nodes with systemd-boot through
    proxmox-boot-tool; its per-ESP mode is the authority when available.
    """
    efi = os.path.isdir(os.path.join(sysfs_root, "firmware", "efi"))
    uuids = os.path.join(etc_root, "etc", "kernel", "proxmox-boot-uuids")
    cmdline = os.path.join(etc_root, "etc", "kernel", "cmdline")
    result = {"name": "unknown", "source": "", "efi": efi, "esps": []}
    if pbt_status:
        esps = [{"uuid": uuid, "mode": mode} for uuid, mode in _PBT_ESP.findall(pbt_status)]
        result["esps"] = esps
        modes = {esp["mode"] for esp in esps}
        if "uefi" in modes:
            return dict(result, name="systemd-boot", source="proxmox-boot-tool status: ESP in uefi mode")
        if modes == {"grub"}:
            return dict(result, name="grub", source="proxmox-boot-tool status: every ESP in grub mode")
    if efi and os.path.isfile(uuids) and os.path.isfile(cmdline):
        return dict(result, name="systemd-boot",
                    source="/sys/firmware/efi, /etc/kernel/proxmox-boot-uuids and /etc/kernel/cmdline present")
    for marker in (os.path.join(etc_root, "boot", "grub", "grub.cfg"),
                   os.path.join(etc_root, "etc", "default", "grub")):
        if os.path.exists(marker):
            where = "/" + os.path.relpath(marker, etc_root)
            return dict(result, name="grub", source="%s present" % where)
    reader.warn("boot loader not recognised: no proxmox-boot-tool ESP, no /etc/kernel/cmdline, no GRUB files")
    return dict(result, source="nothing recognised")


def management_reasons(addresses: dict[str, list[dict]], default_devs: dict[str, set[str]],
                       connection_iface: str | None, connection_address: str | None) -> dict[str, list[str]]:
    """Interface -> why it is a management path."""
    reasons: dict[str, list[str]] = {}
    for family, devs in sorted(default_devs.items()):
        for dev in sorted(devs):
            reasons.setdefault(dev, []).append("default route (%s)" % family)
    if connection_iface:
        reasons.setdefault(connection_iface, []).append("holds connection address %s" % connection_address)
    return reasons


def installed_kernels(reader: TreeReader, etc_root: str, running: str | None) -> list[str]:
    """Kernel releases the node can boot: /boot/vmlinuz-* and /lib/modules/*/modules.dep, plus the running one."""
    found = {running} if running else set()
    boot = reader.listdir(os.path.join(etc_root, "boot"))
    found.update(n[len("vmlinuz-"):] for n in boot if n.startswith("vmlinuz-"))
    for base in ("lib/modules", "usr/lib/modules"):
        directory = os.path.join(etc_root, base)
        found.update(n for n in reader.listdir(directory) if os.path.isfile(os.path.join(directory, n, "modules.dep")))
    return sorted(found)
