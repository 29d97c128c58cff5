# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live (re)binding of PCI functions through sysfs: driver_override, unbind, probe.

A device is touched only while its vendor:device still matches what was
planned, so a card moved to another slot is skipped and reported, never bound.
"""

from __future__ import annotations

import errno
import os
from typing import Callable

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vfio_users import VfioUsersUnknown, vfio_users

VFIO = "vfio-pci"
Writer = Callable[[str, str], None]


def write_file(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _forget_id(write: Writer, remove_id: str, pci_id: str) -> None:
    """Take the ID out of vfio-pci's dynamic IDs, which `options vfio-pci ids=` filled at boot:
    otherwise vfio-pci, not the native driver, wins the probe again. Devices already bound stay."""
    if not os.path.exists(remove_id):
        return
    try:
        write(remove_id, pci_id.replace(":", " "))
    except OSError as exc:
        if exc.errno != errno.ENODEV:  # ENODEV: the ID was not in the list
            raise


def _held(reader: TreeReader, dev: str, procfs_root: str) -> str | None:
    """Why the device's IOMMU group is taken by a process (a VM), or None. Fail closed: when /proc cannot be
    read, a VM may hold it."""
    group = reader.link_name(os.path.join(dev, "iommu_group"), warn=False)
    try:
        users = vfio_users(procfs_root).get(group or "", [])
    except VfioUsersUnknown as exc:
        return "whether a VM holds IOMMU group %s cannot be known: %s" % (group, exc)
    return "IOMMU group %s is in use by %s" % (group, ", ".join(users)) if users else None


def rebind(sysfs_root: str, address: str, expected_id: str, state: str, check_mode: bool,
           write: Writer = write_file, procfs_root: str | None = None) -> dict:
    """Bind (state present) or release (state absent) one device; return what happened.

    status: bound | already | released | pending (written, but the kernel did not
    move the device) | skipped (ID changed or device missing) | in_use (its group is held open
    by a process - a running VM - so it is not released) | would_bind | would_release.
    """
    reader = TreeReader()
    pci = os.path.join(sysfs_root, "bus", "pci")
    dev = os.path.join(pci, "devices", address)
    result = {"address": address, "expected_id": expected_id, "changed": False, "warnings": reader.warnings}
    if not os.path.isdir(dev):
        return dict(result, status="skipped", reason="no such device", driver=None)
    found_id = "%s:%s" % (reader.hex_id(os.path.join(dev, "vendor"), 4), reader.hex_id(os.path.join(dev, "device"), 4))
    driver = reader.link_name(os.path.join(dev, "driver"))
    result.update(found_id=found_id, driver=driver)
    if found_id != expected_id:
        return dict(result, status="skipped", reason="vendor:device is %s, expected %s" % (found_id, expected_id))
    override = reader.text(os.path.join(dev, "driver_override"), warn=False)
    binding = state == "present"
    if (binding and driver == VFIO) or (not binding and VFIO not in (driver, override)):
        return dict(result, status="already")
    held = _held(reader, dev, procfs_root) if not binding and driver == VFIO and procfs_root is not None else None
    if held:
        return dict(result, status="in_use", reason=held)
    if check_mode:
        return dict(result, status="would_bind" if binding else "would_release", changed=True)
    if binding:
        write(os.path.join(dev, "driver_override"), VFIO)
    else:
        # An empty line clears driver_override, so the native driver may probe it again.
        write(os.path.join(dev, "driver_override"), "\n")
    if driver:
        write(os.path.join(pci, "drivers", driver, "unbind"), address)
    if not binding:
        _forget_id(write, os.path.join(pci, "drivers", VFIO, "remove_id"), found_id)
    write(os.path.join(pci, "drivers_probe"), address)
    now = reader.link_name(os.path.join(dev, "driver"))
    done = (now == VFIO) if binding else (now != VFIO)
    return dict(result, changed=True, driver=now,
                status=("bound" if binding else "released") if done else "pending")
