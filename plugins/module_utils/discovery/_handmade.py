# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passthrough configuration made by hand (the guide's steps), file and line, and what is wrong with it.

Read-only: pci_facts reports it as vfio_host.handmade so the discover table and the fleet report
show every node that was configured by hand before the collection came. The role's own files
(and its marked block in the initramfs module list) are not hand-made and are left out.
"""

from __future__ import annotations

import fnmatch
import os
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import MAX_READ_BYTES, file_state
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._host import kernel_version
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import (
    cmdline_ids,
    conf_files,
    install_loads,
    kernel_arg_texts,
    kernel_args,
    normalize_module,
    param_key,
    physical_lines,
    spec_matches,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    ADOPT_MANIFEST,
    BLOCK_MARKER,
    CMDLINE_RECORD,
    GRUB_DEFAULT,
    GRUB_DROPIN,
    INITRAMFS_MODULES,
    KERNEL_CMDLINE,
    MODPROBE,
    MODULES_LOAD,
    grub_value_lines,
    parse_record,
    read_manifest,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader

# Kernel parameters that are about passthrough (the guide's, and the ones its readers add).
PASSTHROUGH_PARAMS = ("intel_iommu", "amd_iommu", "iommu", "vfio-pci.ids", "vfio_pci.ids", "pci-stub.ids",
                      "pcie_acs_override", "video", "initcall_blacklist", "modprobe.blacklist",
                      "rd.driver.blacklist", "rd.driver.pre", "vfio_iommu_type1.allow_unsafe_interrupts",
                      "kvm.ignore_msrs", "module_blacklist")
# Kernel parameters that keep modules from loading: module_blacklist= (kernel/module/main.c: the kernel refuses
# to load a listed module at all) and modprobe.blacklist= (kmod, libkmod-config.c kmod_config_parse_kcmdline:
# each comma-separated name becomes a `blacklist` line). Both split their value at ",".
BLACKLIST_PARAMS = ("module_blacklist", "modprobe.blacklist")


def _param_name(token: str) -> str:
    return token.split("=", 1)[0]


# Compared as the kernel compares names (kernel/params.c parameq: "-" and "_" alike; kmod takes a token quoted
# as a whole, libkmod-config.c kmod_config_parse_kcmdline).
_PARAM_KEYS = {param_key(p) for p in PASSTHROUGH_PARAMS}


def _is_passthrough(token: str) -> bool:
    return param_key(_param_name(token[1:] if token.startswith('"') else token)) in _PARAM_KEYS


def blacklisted(token: str) -> list[str] | None:
    """The modules a module_blacklist= or modprobe.blacklist= token keeps off (normalized), or None when the token
    is no such parameter. The token may be quoted as the kernel takes it (lib/cmdline.c next_arg)."""
    args = kernel_args(token)
    if len(args) != 1 or args[0][1] is None or param_key(args[0][0]) not in {param_key(p) for p in BLACKLIST_PARAMS}:
        return None
    # Names are compared with "-" and "_" alike. The kernel compares module_blacklist with strcmp against the
    # module's own name (underscores), so `mlx5-core` there may keep nothing off: reading it as mlx5_core can
    # only report a lockout too many, never one too few.
    return [normalize_module(m) for m in args[0][1].split(",") if m.strip()]


def kernel_parameters(reader: TreeReader, etc_root: str) -> list[dict]:
    """Passthrough tokens in /etc/default/grub, /etc/default/grub.d/*.cfg and /etc/kernel/cmdline. A GRUB line
    whose value cannot be read with confidence is reported whole, as a problem (fail closed: it may bind)."""
    found = []

    def add(shown: str, number: int, token: str, written: str) -> None:
        # `text` is the token as written in the file (adoption takes it out of the line); what the kernel gets
        # is the token as the shell hands it over (quotes undone).
        if _is_passthrough(token):
            entry = {"file": shown, "line": number, "text": written, "kind": "kernel_parameter",
                     "ids": cmdline_ids(token) or []}
            stub = cmdline_ids(token, "pci_stub")
            if stub:
                entry["stub_ids"] = stub
            modules = blacklisted(token)
            if modules is not None:
                entry["blacklisted"] = modules
            found.append(entry)

    def scan(shown: str, text: str) -> None:
        for number, tokens, written, problem in grub_value_lines(text):
            if tokens is None:
                raw = physical_lines(text)[number - 1].strip()
                found.append({"file": shown, "line": number, "text": raw, "kind": "kernel_parameter", "ids": [],
                              "unreadable": "the value of this line cannot be read with confidence (%s) - what it "
                                            "gives the kernel is unknown; write it as one quoted value" % problem})
                continue
            for token, as_written in zip(tokens, written):
                add(shown, number, token, as_written)

    grub_files = [GRUB_DEFAULT] + sorted("/etc/default/grub.d/" + n for n in
                                         reader.listdir(os.path.join(etc_root, "etc/default/grub.d"))
                                         if n.endswith(".cfg"))
    for shown in grub_files:
        if shown == GRUB_DROPIN:
            continue
        path = os.path.join(etc_root, shown.lstrip("/"))
        if os.path.isfile(path):
            scan(shown, reader.text(path, exact=True) or "")
    cmdline = os.path.join(etc_root, KERNEL_CMDLINE.lstrip("/"))
    if os.path.isfile(cmdline):
        added = set(parse_record(reader.text(os.path.join(etc_root, CMDLINE_RECORD.lstrip("/")), warn=False) or "")[0])
        # proxmox-boot-tool puts only the first line in the boot entries (zz-proxmox-boot: get_first_line), and
        # that line is what adoption edits. Split as the kernel splits it (a quoted value with blanks is one token).
        text = (reader.text(cmdline, exact=True) or "").partition("\n")[0]
        for token in [t for t in kernel_arg_texts(text) if t not in added]:
            add(KERNEL_CMDLINE, 1, token, token)
    return found


def _role_block_lines(reader: TreeReader, etc_root: str) -> set[int]:
    """Line numbers of the role's marked block in the initramfs module list."""
    text = reader.text(os.path.join(etc_root, INITRAMFS_MODULES.lstrip("/")), warn=False, exact=True) or ""
    inside, numbers = False, set()
    for number, line in enumerate(physical_lines(text), start=1):
        if line.strip() == BLOCK_MARKER.format(mark="BEGIN"):
            inside = True
        if inside:
            numbers.add(number)
        if line.strip() == BLOCK_MARKER.format(mark="END"):
            inside = False
    return numbers


def handmade(reader: TreeReader, etc_root: str, host: dict, devices: list[dict]) -> list[dict]:
    """Every hand-made passthrough line with `problems` (empty when the line is fine)."""
    block = _role_block_lines(reader, etc_root)
    drivers = {normalize_module(m) for d in devices for m in [d.get("driver")] + list(d.get("modules") or []) if m}
    modaliases = {d["modalias"] for d in devices if d.get("modalias")}
    # Every line is looked at: one below /usr/lib or /run that keeps the management NIC off is a lockout too;
    # only the admin's passthrough work (below /etc) is listed otherwise.
    lines = [dict(e, about=_about_passthrough(e, drivers, modaliases)) for e in host.get("vfio_config") or []
             if e["file"] not in (MODPROBE, MODULES_LOAD)
             and not (e["file"] == INITRAMFS_MODULES and e["line"] in block)]
    lines += [dict(e, about=True) for e in kernel_parameters(reader, etc_root)]
    lines += [dict(e, about=e["file"].startswith("/etc/")) for e in udev_overrides(reader, etc_root)]
    kernels = host.get("installed_kernels") or []
    in_use = {}
    for device in devices:
        if device.get("driver"):
            in_use.setdefault(device["driver"].replace("-", "_"), []).append(device)
    seen: dict[tuple, str] = {}
    for line in lines:
        problems = []
        key = (line["kind"], line["text"])
        if key in seen:
            problems.append("duplicate of %s" % seen[key])
        else:
            seen[key] = "%s:%d" % (line["file"], line["line"])
        general, lockouts = _line_problems(line, host, kernels, in_use, devices)
        lockouts += _binds_management(line, host, devices)
        unreadable = line.pop("unreadable", None)
        if unreadable is not None:
            if _reaches_kernel(line, host) and _management_at_risk(devices):
                lockouts.append(unreadable + " - it may bind or blacklist the management NIC: the node could lose "
                                             "its network at the next boot")
            else:
                general.append(unreadable)
        if line["kind"] != "kernel_parameter" or _reaches_kernel(line, host):
            general += _binds_vfs(line, devices)
        # The lockout comes first: the role's refusal and adoption's reason quote the first problem.
        line["problems"] = lockouts + problems + general
        line["lockout"] = bool(lockouts)
        line.pop("blacklisted", None)
    return [line for line in lines if line.pop("about") or line["lockout"]]


def _reaches_kernel(line: dict, host: dict) -> bool:
    """Whether a kernel parameter in this file reaches the kernel with the node's boot loader (an unknown boot
    loader fails closed: it may)."""
    loader = (host.get("boot_loader") or {}).get("name")
    return not (loader in ("grub", "systemd-boot") and (line["file"] == KERNEL_CMDLINE) != (loader == "systemd-boot"))


def _managing(device: dict) -> list[str]:
    return [n["name"] for n in device.get("netdevs") or [] if n.get("management")]


def _management_at_risk(devices: list[dict]) -> bool:
    return any(_managing(d) and d.get("driver") != "vfio-pci" for d in devices)


def _binds_management(line: dict, host: dict, devices: list[dict]) -> list[str]:
    """A hand-made binding - any form vfio-pci reads - of a management NIC not on vfio-pci yet: the next boot
    takes the node off the network. A kernel parameter counts only in the file the boot loader reads."""
    if not line.get("ids") and not line.get("stub_ids"):
        return []
    if line["kind"] == "kernel_parameter" and not _reaches_kernel(line, host):
        return []
    found = []
    for device in devices:
        managing = _managing(device)
        for driver, key in (("vfio-pci", "ids"), ("pci-stub", "stub_ids")):
            ids = [i for i in line.get(key) or [] if spec_matches(i, device)]
            if managing and ids and device.get("driver") != driver:
                found.append("binds %s (%s), the management NIC, to %s (ids %s) - the node loses its network at "
                             "the next boot" % (device["address"], ", ".join(managing), driver, ",".join(ids)))
    return found


def _binds_vfs(line: dict, devices: list[dict]) -> list[str]:
    """A boot binding by ID that matches SR-IOV virtual functions: VFs exist only once their PF made them at
    runtime, and vfio-pci's ids take every VF with that ID - of every PF, not only the one meant."""
    vfs = {}
    for device in devices:
        physfn = (device.get("sriov") or {}).get("physfn")
        ids = [i for i in line.get("ids") or [] if spec_matches(i, device)]
        if physfn and ids:
            vfs.setdefault(",".join(ids), []).append("%s (VF of %s)" % (device["address"], physfn))
    return ["binds SR-IOV virtual functions by ID %s: %s - VFs are made at runtime by their PF, and a binding by ID "
            "also takes the VFs of every other PF with that ID; set the VFs up with passthrough_sriov "
            "(vf_driver: vfio-pci) instead" % (ids, ", ".join(found)) for ids, found in vfs.items()]


def _about_passthrough(entry: dict, drivers: set, modaliases: set) -> bool:
    """Whether a module configuration line is the admin's passthrough work: below /etc (files below /usr/lib
    and /run are a package's or the running system's), and for blacklist and softdep lines, about a driver of
    a PCI device on this node or about vfio (Proxmox's own `blacklist nvidiafb`, Debian's framebuffer
    blacklists and USB softdeps are not)."""
    if not entry["file"].startswith("/etc/"):
        return False
    if entry["kind"] == "blacklist":
        return entry.get("module") in drivers
    if entry["kind"] == "install" and not (entry.get("module") or "").startswith("vfio"):
        return entry.get("module") in drivers  # _modconf keeps only those that keep the module off
    if entry["kind"] == "softdep":
        return "vfio" in entry["text"]
    if entry["kind"] == "alias":
        return "vfio" in entry["text"] or bool(_alias_matches(entry["text"], modaliases))
    return True


def _alias_matches(text: str, modaliases) -> list[str]:
    """The modaliases an `alias PATTERN MODULE` line matches (kmod compares with fnmatch(PATTERN, modalias, 0):
    libkmod/libkmod-module.c kmod_module_new_from_alias lookup in kmod_lookup_alias_from_config)."""
    words = text.split()
    return [m for m in modaliases if len(words) > 2 and fnmatch.fnmatchcase(m, words[1])]


def _keeps_off(module: str, what: str, in_use: dict) -> tuple[list[str], list[str]]:
    """(problems, lockout problems) of a line that keeps a driver from loading at the next boot."""
    users = in_use.get(normalize_module(module), [])
    managing = [d for d in users if _managing(d)]
    if managing:
        return [], ["%s %s, the driver of the management NIC %s - the node loses its network at the next boot" % (
            what, normalize_module(module), ", ".join("%s (%s)" % (d["address"], ", ".join(_managing(d)))
                                                      for d in managing))]
    if users:
        return ["%s %s, which %s use%s now - fine only if all of them go to VMs" % (
            what, normalize_module(module), ", ".join(d["address"] for d in users), "" if len(users) > 1 else "s")], []
    return [], []


def _line_problems(line: dict, host: dict, kernels: list[str], in_use: dict,
                   devices: list[dict]) -> tuple[list[str], list[str]]:
    """(problems, lockout problems) of one line."""
    if line["kind"] == "kernel_parameter":
        return _kernel_parameter_problems(line, host, kernels, in_use, devices)
    words = line["text"].split()
    if line["kind"] == "alias" and len(words) > 2:
        return [], _alias_lockouts(line, words, devices)
    if line["kind"] in ("driverctl", "udev"):
        # driverctl sets its override at every boot (driverctl@.service), a udev rule at every add event: the
        # device gets that driver or none.
        return [], ["%s gives %s (%s), the management NIC, to %s - the node loses its network at the next boot" % (
            line["kind"], d["address"], ", ".join(_managing(d)), line["module"] or "no driver")
            for d in devices if _overrides(line, d) and _managing(d)
            and normalize_module(line["module"] or "") != normalize_module(d.get("driver") or "")]
    if line["kind"] == "blacklist":
        return _keeps_off(words[1], "blacklists", in_use) if len(words) > 1 else ([], [])
    if line["kind"] == "install" and len(words) > 1 and not install_loads(line.get("command")):
        return _keeps_off(words[1], "runs %r instead of loading" % line["command"], in_use)
    newer = [k for k in kernels if kernel_version(k) >= (6, 2)]
    virqfd = line["kind"] == "load" and line.get("module") == "vfio_virqfd" and newer
    return ["vfio_virqfd does not exist on %s (merged into vfio in 6.2): systemd-modules-load logs a failure at "
            "every boot" % ", ".join(newer)] if virqfd else [], []


def _kernel_parameter_problems(line: dict, host: dict, kernels: list[str], in_use: dict,
                               devices: list[dict]) -> tuple[list[str], list[str]]:
    general, lockouts = _parameter_problems(line["text"], host.get("cpu_vendor"), kernels), []
    # initcall_blacklist= keeps named init functions from running, a driver's among them (init/main.c
    # initcall_blacklisted, also for modules): which driver cannot be told from the names. One the running
    # kernel already has did not take the management NIC; a new one may.
    name = param_key(_param_name(line["text"].lstrip('"')))
    if name == "initcall_blacklist" and _reaches_kernel(line, host) and \
            line["text"] not in (host.get("cmdline") or []) and _management_at_risk(devices):
        lockouts.append("the kernel parameter %s is not in force yet and keeps the named init functions from "
                        "running - if one is the management NIC's driver's, the node loses its network at the "
                        "next boot; boot with it once by hand first, or remove it" % line["text"])
    # A blacklist on the command line counts where the boot loader reads it (like a binding).
    if line.get("blacklisted") and _reaches_kernel(line, host):
        for module in line["blacklisted"]:
            more, locks = _keeps_off(module, "the kernel parameter %s keeps off" % line["text"], in_use)
            general, lockouts = general + more, lockouts + locks
    return general, lockouts


def _overrides(line: dict, device: dict) -> bool:
    """Whether a driverctl file or a udev rule's driver_override reaches the device. A udev rule is matched on
    what it names (KERNEL/KERNELS, ATTR{vendor}, ATTR{device}); naming none of them, it may reach every PCI
    device (fail closed)."""
    if line["kind"] == "driverctl":
        return device["address"] == line.get("address")
    match = line.get("match") or {}
    kernel = match.get("kernel")
    ids = {"vendor": device.get("vendor"), "device": device.get("device")}
    return (kernel is None or fnmatch.fnmatchcase(device["address"], kernel)) and all(
        match.get(key) is None or match[key].lower().replace("0x", "") == (ids[key] or "") for key in ids)


UDEV_DIRS = ("etc/udev/rules.d", "run/udev/rules.d", "usr/local/lib/udev/rules.d", "usr/lib/udev/rules.d",
             "lib/udev/rules.d")
_UDEV_OVERRIDE = re.compile(r'ATTR\{driver_override\}\s*=\s*"([^"]*)"')
_UDEV_MATCH = {"kernel": re.compile(r'KERNELS?\s*==\s*"([^"]*)"'),
               "vendor": re.compile(r'ATTRS?\{vendor\}\s*==\s*"([^"]*)"'),
               "device": re.compile(r'ATTRS?\{device\}\s*==\s*"([^"]*)"')}


def udev_overrides(reader: TreeReader, etc_root: str) -> list[dict]:
    """udev rules that set a PCI device's driver_override (udev reads *.rules, one file per name, /etc first)."""
    found = []
    for path in conf_files(reader, etc_root, UDEV_DIRS, (".rules",)):
        text = reader.text(path, warn=False, exact=True) or ""
        for number, raw in enumerate(physical_lines(text), start=1):
            line = raw.strip()
            override = _UDEV_OVERRIDE.search(line)
            if override and override.group(1) and not line.startswith("#"):  # "" clears an override
                found.append({"file": "/" + os.path.relpath(path, etc_root), "line": number, "text": line,
                              "kind": "udev", "module": normalize_module(override.group(1)) or None, "ids": [],
                              "match": {k: (m.group(1) if m else None) for k, m in
                                        ((k, r.search(line)) for k, r in _UDEV_MATCH.items())}})
    return found


def _alias_lockouts(line: dict, words: list[str], devices: list[dict]) -> list[str]:
    """An alias matching the management NIC's modalias that names another module: udev loads that one instead."""
    lockouts = []
    target = line.get("target") or words[2]
    for device in devices:
        if _managing(device) and device.get("driver") and \
                _alias_matches(line["text"], [device.get("modalias") or ""]) and \
                target.replace("-", "_") != normalize_module(device["driver"]):  # kmod keeps a \r in the name
            lockouts.append("makes udev load %r instead of %s for %s (%s), the management NIC (the alias matches "
                            "its modalias) - the node loses its network at the next boot" % (
                                target, device["driver"], device["address"], ", ".join(_managing(device))))
    return lockouts


def _parameter_problems(token: str, cpu_vendor: str | None, kernels: list[str]) -> list[str]:
    name = _param_name(token)
    if name == "intel_iommu" and cpu_vendor in ("amd", "hygon"):
        return ["intel_iommu on an %s CPU does nothing" % cpu_vendor.upper()]
    if name == "amd_iommu" and token.split("=", 1)[-1] == "on":
        return ["amd_iommu=on is not a valid value (the AMD IOMMU is on by default)"]
    if token == "intel_iommu=on" and kernels and all(kernel_version(k) >= (6, 8) for k in kernels):
        return ["intel_iommu=on is the default on every installed kernel (6.8 and later)"]
    if name == "pcie_acs_override":
        return ["pcie_acs_override splits IOMMU groups the hardware does not isolate: devices in them can reach "
                "each other's memory"]
    return []


def handmade_files(reader: TreeReader, etc_root: str, lines: list[dict]) -> dict[str, dict]:
    """State and exact text of every file below /etc holding a hand-made line, and of every file (and its
    copy) an earlier adoption took over: what passthrough_adopt edits and what a rollback gives back."""
    manifest, problem = read_manifest(reader.text(os.path.join(etc_root, ADOPT_MANIFEST.lstrip("/")), warn=False))
    if problem:
        reader.warn(problem)
    paths = {e["file"] for e in lines if e["file"].startswith("/etc/")}
    for path, known in manifest["files"].items():
        paths |= {path, known.get("copy") or path}
    found = {}
    for shown in sorted(paths):
        full = os.path.join(etc_root, shown.lstrip("/"))
        try:
            state = dict(file_state(full), path=shown)
            if state.get("type") == "file":
                with open(full, "rb") as handle:
                    data = handle.read(MAX_READ_BYTES + 1)
                state["content"] = _utf8(data) if len(data) <= MAX_READ_BYTES else None
        except OSError as exc:
            state = {"path": shown, "exists": True, "type": "file", "error": exc.strerror or str(exc)}
        found[shown] = state
    return found


def _utf8(data: bytes) -> str | None:
    """The text, or None when the bytes are not UTF-8 (adoption must not rewrite what it cannot read exactly)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
