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
