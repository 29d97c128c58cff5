# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module configuration already on the node that touches passthrough, file and line.

kmod reads every *.conf in the modprobe.d directories and joins `options` lines for one
module (the kernel then keeps the last `ids=`), so a hand-made `options vfio-pci ids=`
decides bindings next to the role's. Reported here: modprobe.d `options`, `install`,
`remove` and `alias` lines for vfio modules, every `blacklist` and `softdep` line, vfio
lines of /etc/modules, modules-load.d and the initramfs module list, and driverctl
overrides.
"""

from __future__ import annotations

import os
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._tree import TreeReader

# In the order a file's name masks the same name further on: kmod (libkmod-config.c, kmod 30 to 34) and
# systemd-modules-load (conf_files_list) read one file per name, the first directory's.
MODPROBE_DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d",
                 "lib/modprobe.d")
LOAD_FILES = ("etc/modules", "etc/initramfs-tools/modules")
LOAD_DIRS = ("etc/modules-load.d", "run/modules-load.d", "usr/local/lib/modules-load.d", "usr/lib/modules-load.d",
             "lib/modules-load.d")
DRIVERCTL_DIR = "etc/driverctl.d"


def normalize_module(name: str) -> str:
    return name.strip().replace("-", "_")


def conf_files(reader: TreeReader, etc_root: str, directories, suffixes=(".conf",)) -> list[str]:
    """The files the tool reads: by suffix (kmod: .conf and .alias), no hidden ones, and of one name only the
    first directory's (a file of that name in /etc - even a link to /dev/null - masks a package's)."""
    files, names = [], set()
    for directory in directories:
        base = os.path.join(etc_root, directory)
        for name in reader.listdir(base):
            if name.endswith(suffixes) and not name.startswith(".") and name not in names:
                names.add(name)
                files.append(os.path.join(base, name))
    return files


def physical_lines(text: str) -> list[str]:
    """The lines as kmod (shared/util.c freadline_wrapped), sh `read` and blockinfile's callers see them: split at
    "\n" only (str.splitlines also splits at \r, \f, \x1c-\x1e, \x85 and U+2028, which none of them do)."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def modprobe_lines(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, text, words) of each command, with comments and `\\` continuations handled."""
    found, pending, start = [], "", 0
    for number, raw in enumerate((line.rstrip("\n") for line in physical_lines(text)), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.split():
            found.append((start, line.strip(), line.split()))
    return found


def _relevant(words: list[str], raw: str | None = None) -> str | None:
    command = words[0]
    if command in ("blacklist", "softdep"):
        return command
    # kvm.ignore_msrs on the command line is passthrough configuration; the same option in modprobe.d is too.
    if command == "options" and len(words) > 1 and normalize_module(words[1]) == "kvm" and raw is not None and \
            last_param(kmod_options(raw) or "", "ignore_msrs") is not None:
        return command
    # pci-stub takes devices by ID like vfio-pci (the older guides' stub driver).
    if len(words) > 1 and (command in ("options", "install", "remove") and normalize_module(words[1]).startswith(
            "vfio") or command == "options" and normalize_module(words[1]) == "pci_stub"):
        return command
    # An install command that does not load its module keeps the driver off like a blacklist (kept like one).
    if command == "install" and raw is not None and not install_loads(install_command(raw)):
        return command
    # An alias whose pattern may match a PCI device's modalias decides what udev loads for it: kmod looks up the
    # configuration's aliases first and stops at a match (libkmod/libkmod.c kmod_module_new_from_lookup).
    if command == "alias" and (any("vfio" in w for w in words[1:]) or (
            len(words) > 2 and (words[1].startswith("pci:") or any(c in words[1] for c in "*?[")))):
        return command
    return None


def install_command(raw: str) -> str | None:
    """The command kmod runs for an `install MODULE COMMAND` line (raw as kmod_commands gives it), or None when
    kmod skips the line. libkmod/libkmod-config.c kmod_config_parse(): the command word and the module name end
    at a space or tab (strtok_r "\t "), the command is everything after the one separator that ends the module
    name (strtok_r with no separators) - kept as it is: a "#" in it is the shell's comment, not kmod's, and a line
    with only white space after the name still has a command; none at all is a syntax error."""
    rest = raw.lstrip("\t ")
    for _word in ("install", "module"):
        rest = rest.lstrip("\t ")
        end = min([i for i in (rest.find(" "), rest.find("\t")) if i >= 0] or [len(rest)])
        rest = rest[end + 1:]
    return rest or None


def install_loads(command: str | None) -> bool:
    """Whether an install command still loads its module (True when kmod skips the line: None). kmod
    (libkmod-module.c kmod_module_probe_insert_module / module_do_install_commands) runs the command with system()
    INSTEAD of inserting the module, so the module loads only when the command loads it: `modprobe
    --ignore-install MODULE` (tools/modprobe.c -i, --ignore-install: skip the install command) or insmod does.
    Anything else - /bin/false, /bin/true, a plain `modprobe MODULE` (which runs the same install command again),
    a command that is all comment, or a script that cannot be read - counts as not loading it: a driver this line
    may keep off is treated as kept off."""
    if command is None:
        return True
    words = command.split("#", 1)[0].split()
    return any(w in ("--ignore-install", "-i") or w.rsplit("/", 1)[-1] == "insmod" for w in words)


# --- what the kernel and kmod read: module options and vfio-pci's ids ------------------------------
# Each rule below is taken from the source that applies it:
# - kmod, libkmod/libkmod-config.c kmod_config_parse(): a command is one line as shared/util.c
#   freadline_wrapped() returns it ("\\" + newline joins the next line with nothing between; "\\" + any other
#   character keeps that character); a line whose first character is "#" is a comment, and only such a line (a
#   "#" later on the line is passed to the kernel as words); the command and the module name end at a space or
#   tab (strtok_r "\t "); the rest of the line is the options string, tabs turned to spaces
#   (kmod_config_add_options); module names are compared with "-" and "_" alike (underscores()).
# - kmod, libkmod/libkmod-config.c kmod_config_parse_kcmdline(): `module.param=value` on the kernel command
#   line becomes an option of the module (name through underscores()); a token may be quoted as a whole.
# - Linux, lib/cmdline.c next_arg(): the options string is split at white space outside double quotes; a
#   quote opening the word or the value is dropped with its closing one. kernel/params.c parse_args() sets
#   each parameter in turn, so of several `ids=` the last one counts; parameq() compares names with "-" and
#   "_" alike.
# - Linux, drivers/vfio/pci/vfio_pci.c vfio_pci_fill_ids(): ids is split at "," (strsep), empty entries are
#   skipped, each is read with sscanf("%x:%x:%x:%x:%x:%x") into vendor, device, subvendor, subdevice, class,
#   class_mask; fewer than two fields is an invalid entry; missing subvendor/subdevice are PCI_ANY_ID, missing
#   class and mask 0. lib/vsprintf.c vsscanf(): "%x" skips white space, takes an optional 0x, then hex digits
#   (into an unsigned int); the scan stops at the first mismatch and keeps what it read so far.
# - Linux, drivers/pci/pci.h pci_match_one_device(): a field matches when it is PCI_ANY_ID or equal, and the
#   class when (class ^ device class) & class_mask is 0.
# - initramfs-tools, scripts/functions load_modules(): each line of /conf/modules (from
#   /etc/initramfs-tools/modules) that is not empty and does not start with "#" is run as `modprobe $m`:
#   the words after the module name are options on modprobe's command line, which kmod puts after the
#   modprobe.d options (so they come last).
PCI_ANY_ID = 0xFFFFFFFF
_KERNEL_SPACE = " \t\n\v\f\r"
_HEX = "0123456789abcdefABCDEF"


def kmod_commands(text: str) -> list[tuple[int, str]]:
    """(first line number, command text) of each command kmod reads in a modprobe.d file."""
    found, buf, start, number, i = [], [], 1, 1, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 2
            if text[i - 1] == "\n":
                number += 1
            else:
                buf.append(text[i - 1])
            continue
        if ch == "\\":  # a backslash at the end of the file is dropped
            i += 1
            continue
        if ch == "\n":
            found.append((start, "".join(buf)))
            buf, number = [], number + 1
            start = number
        else:
            buf.append(ch)
        i += 1
    if buf:
        found.append((start, "".join(buf)))
    return [(n, line) for n, line in found if line and not line.startswith("#")]


def kmod_options(command: str) -> str | None:
    """The options string of an `options MODULE ...` command as kmod hands it to the kernel, or None."""
    words = command.replace("\t", " ").split(" ")
    words = [w for w in words if w != ""]
    if len(words) < 3 or words[0] != "options":
        return None
    rest = command
    for word in words[:2]:  # strtok_r: skip separators, then the word
        rest = rest.lstrip(" \t")[len(word):]
    return rest.lstrip(" \t").replace("\t", " ")


def kernel_arg_spans(args: str) -> list[tuple[int, int]]:
    """(start, end) of each parameter's text in `args`, as the kernel splits it: kernel/params.c parse_args() skips
    blanks, lib/cmdline.c next_arg() ends a parameter at a blank outside double quotes (every quote turns quoting
    on or off, so `dyndbg="file x.c +p"` is one parameter)."""
    found, i, end = [], 0, len(args)
    while i < end:
        while i < end and args[i] in _KERNEL_SPACE:
            i += 1
        if i == end:
            break
        start, in_quote = i, False
        while i < end and (in_quote or args[i] not in _KERNEL_SPACE):
            if args[i] == '"':
                in_quote = not in_quote
            i += 1
        found.append((start, i))
    return found


def kernel_arg_texts(args: str) -> list[str]:
    """Each parameter of `args` as written (quotes kept), split where the kernel splits them (kernel_arg_spans)."""
    return [args[start:end] for start, end in kernel_arg_spans(args)]


def kernel_args(args: str) -> list[tuple[str, str | None]]:
    """(name, value) of each parameter in a module options string, as Linux lib/cmdline.c next_arg() splits it."""
    found = []
    for start, end in kernel_arg_spans(args):
        word = args[start:end]
        quoted = word.startswith('"')
        if quoted:
            word = word[1:]
        equals = word.find("=")
        end_quote = word.endswith('"')
        if equals < 0:
            found.append((word[:-1] if quoted and end_quote else word, None))
            continue
        name, value = word[:equals], word[equals + 1:]
        if value.startswith('"'):
            value = value[1:]
            if end_quote:
                value, end_quote = value[:-1], False
        if quoted and end_quote:
            value = value[:-1]
        found.append((name, value))
    return found


def param_key(name: str) -> str:
    """kernel/params.c parameq(): "-" and "_" are the same in a parameter name."""
    return name.replace("-", "_")


def last_param(args: str, name: str) -> str | None:
    """The value the kernel keeps for a parameter (the last one; "" for a bare name), or None when absent."""
    value = None
    for key, val in kernel_args(args):
        if param_key(key) == name:
            value = "" if val is None else val
    return value


def _scan_hex(text: str, pos: int) -> tuple[int | None, int]:
    """vsscanf "%x": skip white space, an optional 0x, then hex digits into an unsigned int."""
    while pos < len(text) and text[pos] in _KERNEL_SPACE:
        pos += 1
    if text[pos:pos + 2].lower() == "0x" and pos + 2 < len(text) and text[pos + 2] in _HEX:
        pos += 2
    end = pos
    while end < len(text) and text[end] in _HEX:
        end += 1
    if end == pos:
        return None, pos
    return int(text[pos:end], 16) & 0xFFFFFFFF, end


def id_spec(entry: str) -> tuple[int, ...] | None:
    """(vendor, device, subvendor, subdevice, class, class_mask) of one ids entry, or None when the kernel
    refuses it (fewer than two fields)."""
    fields, pos = [], 0
    while len(fields) < 6:
        if fields:
            if entry[pos:pos + 1] != ":":
                break
            pos += 1
        value, pos = _scan_hex(entry, pos)
        if value is None:
            break
        fields.append(value)
    if len(fields) < 2:
        return None
    return tuple(fields + [PCI_ANY_ID, PCI_ANY_ID, 0, 0][len(fields) - 2:])


def spec_text(spec: tuple[int, ...]) -> str:
    """vendor:device for the plain form; every field otherwise (ffffffff: any)."""
    if spec[2:] == (PCI_ANY_ID, PCI_ANY_ID, 0, 0) and PCI_ANY_ID not in spec[:2]:
        return "%04x:%04x" % spec[:2]
    return ":".join("%x" % f if f == PCI_ANY_ID else "%04x" % f for f in spec[:4]) + ":%06x:%06x" % spec[4:]


def vfio_ids(value: str | None) -> list[str]:
    """The ids entries vfio-pci adds from an ids= value, each as spec_text."""
    if value is None:
        return []
    return [spec_text(s) for s in (id_spec(e) for e in value.split(",") if e) if s is not None]


def spec_matches(text: str, device: dict) -> bool:
    """Whether an ids entry (spec_text) makes vfio-pci take this device (pci_match_one_device)."""
    spec = id_spec(text)
    if spec is None:
        return False

    def number(key: str) -> int | None:
        try:
            return int(device.get(key) or "", 16)
        except ValueError:
            return None

    have = [number("vendor"), number("device"), number("subsystem_vendor"), number("subsystem_device")]
    for want, value in zip(spec[:4], have):
        if want not in (PCI_ANY_ID, value):
            return False
    pci_class = number("class")
    return not spec[5] or (pci_class is not None and not (spec[4] ^ pci_class) & spec[5])


def cmdline_ids(token: str, driver: str = "vfio_pci") -> list[str] | None:
    """The ids a `vfio-pci.ids=` kernel parameter (any spelling kmod and the kernel take) gives vfio-pci, or None
    when the token is no such parameter. `driver="pci_stub"`: the same for `pci-stub.ids=` (drivers/pci/pci-stub.c
    reads its ids with the same sscanf as vfio-pci; built in, it binds them at boot, and kmod hands the parameter to
    the module when one loads it)."""
    bare = token[1:] if token.startswith('"') else token
    module, dot, rest = bare.partition(".")
    if not dot or "=" in module or normalize_module(module) != driver:
        return None
    args = kernel_args(('"' if token.startswith('"') else "") + rest)
    if len(args) != 1 or param_key(args[0][0]) != "ids":
        return None
    return vfio_ids(args[0][1] or "")


def load_ids(words: list[str], driver: str = "vfio_pci") -> list[str]:
    """The ids of a `vfio_pci ids=...` line in the initramfs module list (modprobe's command line options);
    `driver="pci_stub"`: of a `pci_stub ids=...` line."""
    if len(words) < 2 or normalize_module(words[0]) != driver:
        return []
    return vfio_ids(last_param(" ".join(words[1:]), "ids"))


def _ids(raw: str | None) -> list[str]:
    """The ids of an options command, read as kmod and the kernel read it (the last ids= counts)."""
    options = kmod_options(raw) if raw is not None else None
    return vfio_ids(last_param(options, "ids")) if options is not None else []


def _real(path: str, etc_root: str) -> str:
    """Where a path leads inside the node's tree (an absolute link target is below etc_root too)."""
    for _hop in range(8):
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        path = os.path.normpath(os.path.join(etc_root, target.lstrip("/")) if os.path.isabs(target)
                                else os.path.join(os.path.dirname(path), target))
    return os.path.normpath(path)


def vfio_config(reader: TreeReader, etc_root: str) -> list[dict]:
    """[{file, line, text, kind, module, ids}] in file order; paths as the node sees them. A link to a file
    read already (Debian's /etc/modules-load.d/modules.conf -> ../modules) is not read twice."""
    entries = []
    read: set[str] = set()

    def shown(path: str) -> str:
        return "/" + os.path.relpath(path, etc_root)

    def first_time(path: str) -> bool:
        real = _real(path, etc_root)
        if real in read:
            return False
        read.add(real)
        return True

    for path in [p for p in conf_files(reader, etc_root, MODPROBE_DIRS, (".conf", ".alias")) if first_time(p)]:
        text = reader.text(path, warn=True, exact=True) or ""
        raw = dict(kmod_commands(text))
        for number, line, words in modprobe_lines(text):
            kind = _relevant(words, raw.get(number))
            if kind:
                module = normalize_module(words[1]) if len(words) > 1 else None
                entry = {"file": shown(path), "line": number, "text": line, "kind": kind, "module": module,
                         "ids": _ids(raw.get(number)) if kind == "options" and module == "vfio_pci" else []}
                if kind == "options" and module == "pci_stub":
                    entry["stub_ids"] = _ids(raw.get(number))
                if kind == "alias":
                    # The module as kmod reads it: words end at a space or tab only, a \r stays part of the name.
                    entry["target"] = ([w for w in re.split("[ \t]+", raw.get(number) or "") if w][2:] or [None])[0]
                if kind == "install":
                    entry["command"] = install_command(raw.get(number) or "")
                entries.append(entry)
    load_files = [os.path.join(etc_root, f) for f in LOAD_FILES] + conf_files(reader, etc_root, LOAD_DIRS)
    for path in load_files:
        if not os.path.isfile(path) or not first_time(path):
            continue
        initramfs = path == os.path.join(etc_root, LOAD_FILES[1])
        for number, raw in enumerate(physical_lines(reader.text(path, exact=True) or ""), start=1):
            # initramfs-tools load_modules(): `modprobe $m` of every line not starting with "#" - the words after
            # the module name are its options; systemd-modules-load reads module names only.
            words = (raw if initramfs else raw.split("#", 1)[0]).split()
            module = normalize_module(words[0]) if words else ""
            if words and not words[0].startswith("#") and (module.startswith("vfio") or module == "pci_stub"):
                entries.append({"file": shown(path), "line": number, "text": raw.strip(), "kind": "load",
                                "module": module, "ids": load_ids(words) if initramfs else [],
                                "stub_ids": load_ids(words, "pci_stub") if initramfs else []})
    base = os.path.join(etc_root, DRIVERCTL_DIR)
    for name in reader.listdir(base):
        if name.startswith("pci-"):
            driver = reader.text(os.path.join(base, name)) or ""
            entries.append({"file": shown(os.path.join(base, name)), "line": 1, "text": driver, "kind": "driverctl",
                            "module": normalize_module(driver) if driver else None, "address": name[4:], "ids": []})
    return entries
