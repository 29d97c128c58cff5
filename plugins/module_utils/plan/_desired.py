# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node's desired state: every file the role owns, its block, command line, records, bindings.

The one table of what the role writes (OWNED_FILES) lives here; the role's templates
are the one place each file's format is written. `desired()` turns the planner's
decisions plus what file_state saw on the node into data the role only moves: files to
write or remove, directories to create, the initramfs-modules block, the command line
edit, the record of this run, devices to bind or release, and why a reboot is needed.
Removal reads the node's records, never the selection, so it works with an empty list.
"""

from __future__ import annotations

import json

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    ADOPT_MANIFEST,
    BACKUP_SUFFIX,
    BLOCK_MARKER,
    CMDLINE_RECORD,
    GRUB_DEFAULT,
    GRUB_DROPIN,
    INIT_TOP,
    INITRAMFS_MODULES,
    KERNEL_CMDLINE,
    MODPROBE,
    MODULES_LOAD,
    OWN_MARK,
    PENDING,
    STATE_DIR,
    STATE_RECORD,
    backup_path,
    grub_tokens,
    is_nonblank_text,
    known_backup,
    parse_record,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import (
    overridden,
    prune_recorded,
    switches_iommu_off,
    token_key,
    unclosed_quote,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import (
    tokens as cmdline_tokens,
)

# path, mode, template, what must be rebuilt when it changes
OWNED_FILES = (
    (MODULES_LOAD, "0644", "modules-load.conf.j2", None),
    (MODPROBE, "0644", "modprobe.conf.j2", "initramfs"),
    (INIT_TOP, "0755", "init-top.sh.j2", "initramfs"),
    (GRUB_DROPIN, "0644", "grub-dropin.cfg.j2", "grub"),
    (STATE_RECORD, "0644", "state.json.j2", None),
)
REBUILD_ORDER = ("initramfs", "grub", "refresh")
# The desired state of a run that selects nothing and removes nothing.
NOTHING = {"act": False, "files": [], "dirs": [], "created_dirs": [], "remove_dirs": [], "restore_backups": [],
           "block": None, "cmdline": None, "cmdline_record": CMDLINE_RECORD, "state_dir": STATE_DIR,
           "state_record": None, "pending_path": PENDING, "bind_targets": [], "reboot_for_cmdline": False,
           "reboot_tokens": [], "errors": []}


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0]


def watched_paths() -> dict[str, list[str]]:
    """What file_state must look at (paths) and read (read) before the planner can decide."""
    owned = [f[0] for f in OWNED_FILES]
    dirs = sorted({_dirname(p) for p in owned})
    # Also where an earlier release kept a script aside (see known_backup): it is put back from there.
    backups = [backup_path(p) for p in owned] + [p + BACKUP_SUFFIX for p in owned]
    read = owned + [CMDLINE_RECORD, PENDING, INITRAMFS_MODULES, KERNEL_CMDLINE, GRUB_DEFAULT, ADOPT_MANIFEST]
    return {"paths": sorted(set(dirs + backups + read)), "read": read}


def _content(seen: dict, path: str) -> str | None:
    entry = seen.get(path) or {}
    return entry.get("content") if entry.get("exists") else None


def _exists(seen: dict, path: str) -> bool:
    return bool((seen.get(path) or {}).get("exists"))


def read_record(seen: dict) -> tuple[dict, str | None]:
    """The record of earlier runs (state.json), or ({}, why it is unusable)."""
    text = _content(seen, STATE_RECORD)
    if text is None:
        return {}, None
    if not text.strip():
        # An empty record is a truncated one (a full disk, a crash), not "nothing was done".
        return {}, "%s is empty - it was truncated; put it back from a backup or remove it knowing the role " \
                   "then forgets what it made" % STATE_RECORD
    try:
        record = json.loads(text)
    except ValueError as exc:
        return {}, "%s is not valid JSON (%s)" % (STATE_RECORD, exc)
    if not isinstance(record, dict):
        return {}, "%s does not hold a mapping" % STATE_RECORD
    problem = record_problem(record)
    # Fail closed: a record half read would remove, restore or release the wrong things.
    if problem is not None:
        return {}, "%s: %s - fix the field or put the record back from a backup" % (STATE_RECORD, problem)
    return record, None


def _device_problem(name: str, value) -> str | None:
    """Why `value` is not {address, id} as the role records a device, or None."""
    if not isinstance(value, dict):
        return "%s is %r, expected a mapping with address and id" % (name, value)
    for field in ("address", "id"):
        if not is_nonblank_text(value.get(field)):
            expected = "PCI address" if field == "address" else "vendor:device"
            return "%s.%s is %r, expected a %s string" % (name, field, value.get(field), expected)
    return None


def record_problem(record: dict) -> str | None:
    """What a hand edit broke in state.json ("<field> is <value>, expected ..."), or None; checked once, here,
    so every feature reads its section as the role wrote it. Backups and created directories name only the
    role's own paths: a rollback moves a backup over its path and removes the directories."""
    return next(_record_problems(record), None)


def _section(record: dict, name: str, kind: type):
    """The section, empty when it is missing or null, or None when it has another type."""
    value = record.get(name)
    return kind() if value is None else value if isinstance(value, kind) else None


def _record_problems(record: dict):
    """Each problem in turn (the caller takes the first); a section of the wrong type is read as empty after it."""
    owned = [f[0] for f in OWNED_FILES]
    creatable = sorted({_dirname(p) for p in owned} - {STATE_DIR})
    for name, kind, expected in (("selectors", dict, "a mapping of selector to {address, id}"),
                                 ("targets", list, "a list of {address, id}"),
                                 ("sriov", list, "a list of {address, id, vfs, vf_driver}"),
                                 ("created_dirs", list, "a list of directories"),
                                 ("backups", dict, "a mapping of owned file to its backup")):
        if _section(record, name, kind) is None:
            yield "%s is %r, expected %s" % (name, record[name], expected)
    for key, value in (_section(record, "selectors", dict) or {}).items():
        problem = _device_problem("selectors[%r]" % key, value)
        if problem:
            yield problem
    for index, target in enumerate(_section(record, "targets", list) or []):
        problem = _device_problem("targets[%d]" % index, target)
        if problem:
            yield problem
    for index, pf in enumerate(_section(record, "sriov", list) or []):
        problem = _device_problem("sriov[%d]" % index, pf)
        vfs, driver = (pf.get("vfs"), pf.get("vf_driver")) if isinstance(pf, dict) else (0, "none")
        if problem:
            yield problem
        if vfs is not None and (isinstance(vfs, bool) or not isinstance(vfs, int) or vfs < 0):
            yield "sriov[%d].vfs is %r, expected a number of VFs" % (index, vfs)
        if driver is not None and not isinstance(driver, str):
            yield "sriov[%d].vf_driver is %r, expected none, vfio-pci or host" % (index, driver)
    for index, directory in enumerate(_section(record, "created_dirs", list) or []):
        if directory not in creatable:
            yield "created_dirs[%d] is %r, expected one of the directories the role creates (%s)" % (
                index, directory, ", ".join(creatable))
    for path, backup in (_section(record, "backups", dict) or {}).items():
        if path not in owned or not isinstance(backup, str) or not known_backup(path, backup):
            yield "backups[%r] is %r, expected an owned file (%s) mapped to its path + %s (+ ~ in init-top)" % (
                path, backup, ", ".join(owned), BACKUP_SUFFIX)


def cmdline_record(seen: dict) -> tuple[list[str], list[str]]:
    """(tokens the role added, original tokens it replaced) from kernel_cmdline's record."""
    return parse_record(_content(seen, CMDLINE_RECORD) or "")


def satisfied(token: str, have: list[str]) -> bool:
    """Whether a running command line already gives what `token` asks (intel_iommu=on,igfx_off gives =on)."""
    if token in have:
        return True
    key, value = token.split("=", 1) if "=" in token else (token, "")
    return any(t.split("=", 1)[0] == key and value in t.split("=", 1)[1].split(",") for t in have if "=" in t)


def given_back_tokens(adopted: dict, files: dict) -> set[str]:
    """Kernel parameters in the originals of adopted GRUB files and /etc/kernel/cmdline (their copies)."""
    tokens: set[str] = set()
    for path, known in (adopted.get("files") or {}).items():
        text = (files.get(known.get("copy")) or {}).get("content") or ""
        if path == KERNEL_CMDLINE:
            tokens |= set(cmdline_tokens(text))
        elif path == GRUB_DEFAULT or path.startswith("/etc/default/grub.d/"):
            tokens |= set(grub_tokens(text))
    return tokens


# x86's COMMAND_LINE_SIZE (arch/x86/include/asm/setup.h): the kernel keeps 2047 bytes of its command line and
# drops the rest without a word.
COMMAND_LINE_MAX = 2047


def _too_long(host: dict, adding: list[str], dropping: list[str], next_line: str | None = None) -> list[str]:
    """Refused when the next boot's command line with the tokens still to add passes what the kernel keeps: the
    tokens at its end (the role's, appended) would not reach the kernel, or reach it cut in two. Counted in bytes.
    systemd-boot: `next_line` is /etc/kernel/cmdline's first line as the run leaves it (without `adding`), and
    systemd-boot adds its initrd= as on the running kernel. GRUB: the running line (its bytes, blanks as they
    are) with the tokens that come and go - its own values are only known to the shell update-grub runs."""
    running = host.get("cmdline") or []
    if next_line is not None:
        base = len(next_line.encode()) + sum(len(t.encode()) + 1 for t in running if t.startswith("initrd="))
    else:
        base = host.get("cmdline_length")
        base = len(" ".join(running).encode()) if not isinstance(base, int) else base
        base -= sum(len(t.encode()) + 1 for t in dropping if t in running)
    length = base + sum(len(t.encode()) + 1 for t in adding)
    if not adding or length <= COMMAND_LINE_MAX:
        return []
    return ["the kernel command line would be about %d bytes with %s - Linux on x86 keeps the first %d and drops "
            "the rest, so they would not take effect: shorten the command line (%s) or passthrough_extra_cmdline" % (
                length, " ".join(adding), COMMAND_LINE_MAX,
                KERNEL_CMDLINE if next_line is not None else "GRUB_CMDLINE_LINUX, then reboot")]


def desired(plan: dict, seen: dict, host: dict) -> dict:
    """Extend the planner's decisions with the node's whole desired state (see module docstring).

    State present with no device selected changes nothing (act false); absent removes what the records name.
    """
    present = plan["state"] == "present"
    if present and not plan["devices"]:
        return dict(NOTHING, pending=[])
    record, problem = read_record(seen)
    errors = [problem] if problem else []
    # Refused before any write: the role replaces files, never links or directories someone put there.
    for path in [f[0] for f in OWNED_FILES] + [PENDING, CMDLINE_RECORD]:
        kind = (seen.get(path) or {}).get("type")
        if (seen.get(path) or {}).get("exists") and kind != "file":
            errors.append("%s is a %s, not a file: the role owns this path and writes only regular files there - "
                          "move it away" % (path, kind))
    for directory in sorted({_dirname(f[0]) for f in OWNED_FILES}):
        kind = (seen.get(directory) or {}).get("type")
        # A link to a directory is fine: the files go where it points.
        if (seen.get(directory) or {}).get("exists") and kind not in ("directory", "link"):
            errors.append("%s is a %s, not a directory - the role writes files below it" % (directory, kind))
    running = host.get("cmdline") or []
    loader = plan["boot_loader"]
    warnings = []
    for path, backup in sorted((record.get("backups") or {}).items()):
        if backup != backup_path(path) and present:
            # An earlier version kept a script aside under a name initramfs-tools runs (see backup_path).
            warnings.append("%s (the file that was at %s before the role) is run by initramfs-tools at every boot "
                            "beside the role's script: rename it to %s and change its name in %s likewise, or "
                            "roll back and run again" % (backup, path, backup_path(path), STATE_RECORD))

    files, dirs, backups = [], [], dict(record.get("backups") or {})
    for path, mode, template, rebuild in OWNED_FILES:
        wanted = present and (
            (path == INIT_TOP and bool(plan["address_binds"]))
            or (path == GRUB_DROPIN and loader == "grub" and bool(plan["cmdline_tokens"]))
            or path in (MODULES_LOAD, MODPROBE, STATE_RECORD))
        text = _content(seen, path)
        if wanted and _exists(seen, path) and path not in backups and (text is None or OWN_MARK not in text):
            backups[path] = backup_path(path)  # someone else's file: kept aside, put back on removal
        files.append({"path": path, "mode": mode, "template": template if wanted else None, "rebuild": rebuild,
                      "backup": backups.get(path) if wanted and path in backups and path not in
                      (record.get("backups") or {}) else None})
        if wanted and _dirname(path) not in dirs:
            dirs.append(_dirname(path))
    created = sorted(set(record.get("created_dirs") or []) | {
        d for d in dirs if not _exists(seen, d) and d != STATE_DIR})

    added, restore = cmdline_record(seen)
    # The drop-in's tokens that the node's own /etc/default/grub does not hold: they leave with the drop-in.
    own_grub = grub_tokens(_content(seen, GRUB_DEFAULT))
    dropin_only = [t for t in grub_tokens(_content(seen, GRUB_DROPIN)) if t not in own_grub]
    adoption = plan.get("adoption") if present else None
    if present:
        # A token the file already satisfies (intel_iommu=on,igfx_off for intel_iommu=on) is left alone;
        # adoption takes hand-made tokens out first.
        own_text = ((adoption or {}).get("texts", {}).get(KERNEL_CMDLINE) or _content(seen, KERNEL_CMDLINE)
                    or "").split("\n", 1)[0]
        # A token the role added that is no longer wanted (iommu_pt off, dropped from extra_cmdline) goes, as the
        # GRUB drop-in loses it; the running kernel keeps it until a reboot.
        if loader == "systemd-boot":
            # Kept when taking it out would put back an original that switches the IOMMU off (intel_iommu=on
            # replaced intel_iommu=off, and a 6.8 kernel no longer needs it): removal gives that back, not a prune.
            stale = [t for t in added if t not in plan["cmdline_tokens"] and not any(
                switches_iommu_off(r) and token_key(r) == token_key(t) for r in restore if "=" in t)]
            # What the line holds once the stale tokens are out: a narrowed token (downstream,multifunction to
            # downstream) is satisfied by the old one only until the prune takes that out.
            pruned = prune_recorded((own_text + "\n"), added, restore, stale)["content"].split("\n")[0]
            left = cmdline_tokens(pruned)
            cmdline = {"present": [t for t in plan["cmdline_tokens"] if not satisfied(t, left)], "prune": stale,
                       "remove_recorded": False}
            for token in plan["cmdline_tokens"]:
                later = overridden(own_text, token)
                if later:
                    errors.append("%s holds %s and, after it, %s - the kernel applies both in that order, so the "
                                  "later one may undo it: remove one of them by hand" % (KERNEL_CMDLINE, token, later))
        else:
            stale = [t for t in dropin_only if t not in plan["cmdline_tokens"]] if loader == "grub" else []
            cmdline = None
        reboot_why = [t for t in plan["cmdline_tokens"] if not satisfied(t, running)] + [
            t for t in stale if t in running]
        # Without /etc/kernel/cmdline, proxmox-boot-tool writes the running line into the boot entries.
        errors += _too_long(host, cmdline["present"], [], pruned) if cmdline and _exists(seen, KERNEL_CMDLINE) \
            else _too_long(host, [t for t in plan["cmdline_tokens"] if not satisfied(t, running)], stale)
    else:
        # Removal reads the records: the tokens kernel_cmdline added (and the ones it replaced), the drop-in's.
        cmdline = {"present": [], "prune": [], "remove_recorded": True} if _exists(seen, CMDLINE_RECORD) else None
        removed = [t for t in added if t not in restore] + dropin_only
        # Tokens that hand-made files given back (passthrough_adopt) hold again need no reboot.
        back = given_back_tokens(plan.get("adopted") or {}, host.get("handmade_files") or {})
        reboot_why = [t for t in removed if t in running and t not in back]
    if cmdline and (cmdline["present"] or cmdline["prune"] or cmdline["remove_recorded"]):
        problem = unclosed_quote(_content(seen, KERNEL_CMDLINE) or "")
        if problem:
            errors.append("%s: %s" % (KERNEL_CMDLINE, problem))
    # Devices an earlier run bound that this plan no longer selects go back to their drivers.
    selected = {d["address"] for d in plan["targets"]} if present else set()
    # On removal, what the given-back hand-made configuration binds stays on vfio-pci.
    adopted = plan.get("adopted") or {"files": {}, "targets": []}
    selected |= set() if present else {t["address"] for t in adopted["targets"]}
    release = [{"address": t["address"], "id": t["id"], "state": "absent"} for t in record.get("targets") or []
               if t.get("address") and t.get("id") and t["address"] not in selected]

    state_record = {"selectors": plan["record"], "targets": plan["targets"], "created_dirs": created,
                    "backups": {p: b for p, b in backups.items() if any(f["path"] == p and f["template"]
                                                                        for f in files)}} if present else None
    return {
        "act": True,
        "files": files,
        "dirs": dirs,
        "created_dirs": created,
        "remove_dirs": [] if present else sorted(created, reverse=True),
        # A file kept aside goes back once the role no longer writes its path: on removal, and when a present run
        # stops wanting it (address binding given up: the init-top script goes, the administrator's comes back).
        "restore_backups": [{"path": p, "backup": b} for p, b in sorted(backups.items())
                            if not any(f["path"] == p and f["template"] for f in files)],
        "block": {"path": INITRAMFS_MODULES, "marker": BLOCK_MARKER, "lines": plan["modules"] if present else None},
        "cmdline": cmdline,
        "cmdline_record": CMDLINE_RECORD,
        "state_dir": STATE_DIR,
        "state_record": state_record,
        "pending": sorted(set((_content(seen, PENDING) or "").split()) & set(REBUILD_ORDER),
                          key=REBUILD_ORDER.index),
        "pending_path": PENDING,
        "bind_targets": [dict(t, state="present") for t in plan["targets"] if present] + release,
        "reboot_for_cmdline": bool(reboot_why),
        "reboot_tokens": reboot_why,
        "errors": errors,
        "warnings": warnings,
    }
