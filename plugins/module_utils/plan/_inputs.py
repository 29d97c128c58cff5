# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Strict reading of the role's inputs: booleans, kernel module names, kernel parameters.

Inventories, surveys and `-e` hand over strings ("false", "no"); a guard that
tests such a string for truth is disarmed. Every reader here returns
(value, problem) so the caller can name the variable in its refusal.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import normalize_module

# Ansible's boolean semantics (ansible.module_utils.parsing.convert_bool), spelled out so
# that anything else - "maybe", 2, a list - is refused instead of guessed.
_TRUE = ("y", "yes", "on", "1", "true", "t")
_FALSE = ("n", "no", "off", "0", "false", "f")

# A kernel module name as kmod accepts it; kmod treats "-" and "_" alike.
_MODULE = re.compile(r"^[A-Za-z0-9_-]+$")

# One kernel parameter that is safe inside a double-quoted, shell-sourced GRUB variable and
# in /etc/kernel/cmdline: no whitespace, quotes, shell metacharacters or control characters.
_TOKEN = re.compile(r"^[A-Za-z0-9_.,:=+/@%-]+$")
# Parameters that decide what boots: a typo in one of these leaves the node unbootable.
BOOT_CRITICAL_KEYS = ("root", "rootfstype", "rootflags", "rootwait", "rootdelay", "ro", "rw", "init",
                      "rdinit", "initrd", "boot", "BOOT_IMAGE", "resume", "resume_offset", "nfsroot",
                      "ip", "zfs")


def boolean(value) -> tuple[bool | None, str | None]:
    """(True/False, None), or (None, why) for anything that is not a boolean."""
    if isinstance(value, bool):
        return value, None
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value), None
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True, None
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False, None
    return None, "%r is not a boolean (use true or false)" % (value,)


def module_name(value) -> tuple[str | None, str | None]:
    """The normalized name ("bnxt-en " -> "bnxt_en"), or (None, why)."""
    if not isinstance(value, str) or not _MODULE.match(value.strip()):
        return None, "%r is not a kernel module name (letters, digits, _ and - only)" % (value,)
    return normalize_module(value), None


def cmdline_token(value) -> tuple[str | None, str | None]:
    """The token unchanged, or (None, why) when it is unsafe to write or boot-critical."""
    if not isinstance(value, str) or not _TOKEN.match(value):
        return None, ("%r is not one plain kernel parameter (no spaces, quotes, $, ;, |, &, <, >, "
                      "brackets or control characters)" % (value,))
    key = value.split("=", 1)[0]
    if key in BOOT_CRITICAL_KEYS:
        return None, "%r sets %s, which decides what boots; the role never writes it" % (value, key)
    return value, None


# The shape of each documented option (roles/passthrough/meta/argument_specs.yml): the planner's features
# read only what passed here, so a list where a string belongs is refused by name instead of raising.
DEVICE_TEXT = ("address", "interface", "mac", "id", "class", "mapping")
DEVICE_FLAGS = ("force", "allow_group")
PF_TEXT = ("address", "interface", "mac", "id", "vf_driver", "vf_macs")
VF_TEXT = ("mac", "state")
VF_FLAGS = ("trust", "spoofchk")
# sriov_totalvfs and a VF index are 16-bit in PCI's SR-IOV capability; a VLAN ID is 12-bit.
MAX_VFS = 65535
SCALARS = ("state", "bind_method", "reboot", "boot_loader")
FLAGS = ("bind_now", "iommu_pt", "adopt")
TOKEN_LISTS = ("extra_cmdline", "blacklist_drivers")


def _kind(value) -> str:
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else \
        "a boolean" if isinstance(value, bool) else "a number" if isinstance(value, (int, float)) else \
        "a string" if isinstance(value, str) else "a %s" % type(value).__name__


def _count(value, largest: int) -> int | None:
    """A whole number 0..largest (an int or a string of ASCII digits), else None."""
    if isinstance(value, bool):
        return None
    text = value.strip() if isinstance(value, str) else str(value) if isinstance(value, int) else ""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(largest)):
        return None
    return int(text) if int(text) <= largest else None


def _mapping(where: str, entry, keys: tuple, errors: list[str]) -> dict | None:
    """The item when it is a mapping with string keys, else None (and why, in errors)."""
    if not isinstance(entry, dict):
        errors.append("%s: %r is %s, not a mapping with one of %s" % (where, entry, _kind(entry), ", ".join(keys)))
        return None
    odd = [k for k in entry if not isinstance(k, str)]
    if odd:
        errors.append("%s: key %r is %s, not a name (allowed: %s)" % (where, odd[0], _kind(odd[0]), ", ".join(keys)))
        return None
    return entry


def _text(where: str, entry: dict, keys: tuple, errors: list[str]) -> None:
    for key in keys:
        if entry.get(key) is not None and not isinstance(entry[key], str):
            errors.append("%s.%s: %r is %s, not a string%s" % (
                where, key, entry[key], _kind(entry[key]),
                " - quote it in YAML" if isinstance(entry[key], (int, float)) else ""))


def _flags(where: str, entry: dict, keys: tuple, errors: list[str]) -> None:
    for key in keys:
        if entry.get(key) not in (None, "") and boolean(entry[key])[1]:
            errors.append("%s.%s: %s" % (where, key, boolean(entry[key])[1]))


def _list(name: str, value, example: str, errors: list[str]) -> list | None:
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return value
    errors.append("%s: %r is %s, not a list of mappings - write it as YAML or JSON, for example %s" % (
        name, value, _kind(value), example))
    return None


def _device(where: str, entry, errors: list[str]) -> None:
    keys = ("address", "interface", "mac", "id")
    if _mapping(where, entry, keys, errors) is None:
        return
    _text(where, entry, DEVICE_TEXT, errors)
    _flags(where, entry, DEVICE_FLAGS, errors)
    vmid = entry.get("vm")
    if vmid is not None and _count(vmid, 999999999) is None:
        errors.append("%s.vm: %r is not a Proxmox VM ID (100 to 999999999)" % (where, vmid))


def _pf(where: str, entry, errors: list[str]) -> None:
    if _mapping(where, entry, ("address", "interface", "mac"), errors) is None:
        return
    _text(where, entry, PF_TEXT, errors)
    if entry.get("vfs") is not None and _count(entry["vfs"], MAX_VFS) is None:
        errors.append("%s.vfs: %r is not a number of VFs (0 to %d; 0 removes them)" % (where, entry["vfs"], MAX_VFS))
    settings = entry.get("vf")
    if settings in (None, ""):
        return
    if not isinstance(settings, list):
        errors.append("%s.vf: %r is %s, not a list of per-VF settings, for example [{index: 0, vlan: 10}]" % (
            where, settings, _kind(settings)))
        return
    for number, item in enumerate(settings):
        label = "%s.vf[%d]" % (where, number)
        if _mapping(label, item, ("index", "mac", "vlan", "trust", "spoofchk", "state"), errors) is None:
            continue
        _text(label, item, VF_TEXT, errors)
        _flags(label, item, VF_FLAGS, errors)
        if item.get("index") is not None and _count(item["index"], MAX_VFS - 1) is None:
            errors.append("%s.index: %r is not a VF index (0 to %d)" % (label, item["index"], MAX_VFS - 1))
        if item.get("vlan") not in (None, "") and _count(item["vlan"], 4094) is None:
            errors.append("%s.vlan: %r is not a VLAN ID (1 to 4094, 0 for none)" % (label, item["vlan"]))


def checked_inputs(inputs) -> tuple[dict, list[str]]:
    """(inputs the features can trust, errors naming each variable and value).

    A variable with a problem reaches the features as unset (its default), so a feature never reads a value of
    the wrong type; the errors refuse the run before anything is written.
    """
    if not isinstance(inputs, dict):
        return {}, ["the role's inputs are %s, not a mapping of passthrough_* variables" % _kind(inputs)]
    clean = dict(inputs)
    errors: list[str] = []
    for key in SCALARS:
        value = inputs.get(key)
        if value is not None and not isinstance(value, str):
            errors.append("passthrough_%s: %r is %s, not a string" % (key, value, _kind(value)))
            clean[key] = None
    for key in FLAGS:
        if inputs.get(key) not in (None, ""):
            value, problem = boolean(inputs[key])
            if problem:
                errors.append("passthrough_%s: %s" % (key, problem))
            clean[key] = value
    for key in TOKEN_LISTS:
        value = inputs.get(key)
        if value not in (None, "") and not isinstance(value, list):
            errors.append("passthrough_%s: %r is %s, not a list" % (key, value, _kind(value)))
            clean[key] = None
    for key, check, example in (("devices", _device, "[{interface: enp2s0}]"),
                                ("sriov", _pf, "[{interface: enp1s0, vfs: 4}]")):
        found: list[str] = []
        items = _list("passthrough_" + key, inputs.get(key), example, found)
        for index, entry in enumerate(items or []):
            check("passthrough_%s[%d]" % (key, index), entry, found)
        errors += found
        # Fail closed: a list with a malformed item is planned as empty; the errors refuse the run.
        clean[key] = [] if found else items
    return clean, errors
