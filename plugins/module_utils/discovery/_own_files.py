# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's own files on a node - where each lives - and how the files it edits read back.

Discovery reads them to tell the role's files and lines from hand-made ones (the records of
kernel_cmdline and of adoption, the GRUB command line variables); the plan, the features and
the appliers use the same paths and readers, so each is written once, below every layer.
"""

from __future__ import annotations

import json
import re
import shlex

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import physical_lines

STATE_DIR = "/etc/vfio-proxmox"
STATE_RECORD = STATE_DIR + "/state.json"
CMDLINE_RECORD = STATE_DIR + "/cmdline-added"
# Written before the first change, removed after the last rebuild: an interrupted run is repaired next time.
PENDING = STATE_DIR + "/rebuild-pending"
KERNEL_CMDLINE = "/etc/kernel/cmdline"
GRUB_DEFAULT = "/etc/default/grub"
INITRAMFS_MODULES = "/etc/initramfs-tools/modules"
BLOCK_MARKER = "# {mark} vfio.proxmox: vfio modules for the initramfs"
GRUB_DROPIN = "/etc/default/grub.d/vfio-proxmox.cfg"
INIT_TOP = "/etc/initramfs-tools/scripts/init-top/vfio-proxmox"
MODPROBE = "/etc/modprobe.d/vfio-proxmox.conf"
MODULES_LOAD = "/etc/modules-load.d/vfio-proxmox.conf"
# Every owned file carries this in its header; a file at an owned path without it is someone else's.
OWN_MARK = "vfio.proxmox:"
BACKUP_SUFFIX = ".vfio-proxmox-backup"
# Hand-made files taken over by passthrough_adopt: exact copies below ADOPT_DIR, listed in the manifest.
ADOPT_DIR = STATE_DIR + "/adopted"
ADOPT_MANIFEST = STATE_DIR + "/adopted.json"


def backup_path(path: str) -> str:
    """Where a file found at an owned path (without the role's mark) is kept aside, to be put back on removal.

    Beside it, under a name the tool that reads the directory skips: kmod, systemd-modules-load and grub-mkconfig
    read only `*.conf` and `*.cfg` there, but initramfs-tools runs every executable in scripts/init-top whose name
    has only letters, digits, `.`, `_` and `-` (hook-functions set_initlist, 0.142 and 0.148) - a kept-aside script
    would still run at every boot. The `~` there makes initramfs-tools skip it."""
    return path + BACKUP_SUFFIX + ("~" if "/etc/initramfs-tools/scripts/" in path else "")


def known_backup(path: str, backup: str) -> bool:
    """Whether a record's backup entry is one the role makes. An earlier release kept an init-top script aside
    without the `~`: still put back from there."""
    return backup in (backup_path(path), path + BACKUP_SUFFIX)


RECORD_HEADER = ("# Ansible managed: written by vfio.proxmox.kernel_cmdline\n"
                 "# vfio.proxmox: kernel command line tokens added by the role (removed again on state=absent)\n")


def parse_record(text: str) -> tuple[list[str], list[str]]:
    """(tokens added, original tokens replaced) from a record: `restore TOKEN` lines name the originals."""
    added, restore = [], []
    # Lines end at "\n" only: a token kept from the node's line may hold any other character (\x85, \f in quotes).
    for line in text.split("\n"):
        if line.startswith("#"):
            continue
        if line.startswith("restore "):
            # One original per line, exactly as it was on the node's line (record_text writes it so): a token twice
            # on the line is put back twice; a quoted one may hold blanks.
            restore.append(line[len("restore "):])
        else:
            added += [t for t in line.split() if t not in added]
    return added, restore


def record_text(added: list[str], restore: list[str]) -> str | None:
    if not added and not restore:
        return None
    return RECORD_HEADER + " ".join(added) + "\n" + "".join("restore %s\n" % t for t in restore)


def read_manifest(text: str | None) -> tuple[dict, str | None]:
    """({files: {path: {copy, original, adopted, rebuild}}, targets, lines, selection}, problem or None)."""
    empty = {"files": {}, "targets": [], "lines": [], "selection": []}
    if text is None:
        return empty, None
    if not text.strip():
        # Truncated (a full disk, a crash): reading it as "nothing adopted" would lose the give-back.
        return empty, "%s is empty - it was truncated; put it back from a backup" % ADOPT_MANIFEST
    try:
        data = json.loads(text)
    except ValueError as exc:
        return empty, "%s is not valid JSON (%s)" % (ADOPT_MANIFEST, exc)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return empty, "%s does not hold a files mapping" % ADOPT_MANIFEST
    manifest = {"files": data["files"], "targets": data.get("targets") or [], "lines": data.get("lines") or [],
                "selection": data.get("selection") or []}
    problem = manifest_problem(manifest)
    return (empty, "%s: %s" % (ADOPT_MANIFEST, problem)) if problem else (manifest, None)


def _sha1(value) -> bool:
    return isinstance(value, str) and bool(re.match(r"^[0-9a-f]{40}$", value))


def _items_problem(name: str, items, fields: dict) -> str | None:
    """Why `items` is not a list of mappings whose `fields` pass their checks (field: (check, expected)), or None."""
    if not isinstance(items, list):
        return "%s is %r, expected a list of mappings with %s" % (name, items, ", ".join(fields))
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return "%s[%d] is %r, expected a mapping with %s" % (name, index, item, ", ".join(fields))
        for field, (check, expected) in fields.items():
            if not check(item.get(field)):
                return "%s[%d].%s is %r, expected %s" % (name, index, field, item.get(field), expected)
    return None


def is_nonblank_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def is_text(value) -> bool:
    return isinstance(value, str)


def is_line_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def manifest_problem(manifest: dict) -> str | None:
    """What in a read manifest a hand edit broke ("<field> is <value>, expected ..."), or None.

    The give-back moves each `copy` over its path: a copy anywhere but below ADOPT_DIR would move a file the role
    never made, so only the exact place the role keeps it is accepted.
    """
    for path, known in manifest["files"].items():
        where = "files[%r]" % path
        if not path.startswith("/etc/") or ".." in path.split("/"):
            return "%s names %r, expected an absolute path below /etc" % (where, path)
        if not isinstance(known, dict):
            return "%s is %r, expected a mapping with copy, original, adopted, rebuild" % (where, known)
        if known.get("copy") != ADOPT_DIR + path:
            return "%s.copy is %r, expected %r (where adoption keeps the copy)" % (where, known.get("copy"),
                                                                                   ADOPT_DIR + path)
        for field in ("original", "adopted"):
            if not _sha1(known.get(field)):
                return "%s.%s is %r, expected a sha1 checksum (40 hex digits)" % (where, field, known.get(field))
        if known.get("rebuild") is not None and not isinstance(known["rebuild"], str):
            return "%s.rebuild is %r, expected a string or null" % (where, known["rebuild"])
    targets = {"address": (is_nonblank_text, "a PCI address"), "id": (is_nonblank_text, "a vendor:device ID")}
    lines = {"file": (is_nonblank_text, "a path"), "line": (is_line_number, "a line number"),
             "text": (is_text, "the line's text"), "reason": (is_text, "a string")}
    selection = {"id": (is_nonblank_text, "a vendor:device ID"), "where": (is_text, "a string")}
    return (_items_problem("targets", manifest["targets"], targets)
            or _items_problem("lines", manifest["lines"], lines)
            or _items_problem("selection", manifest["selection"], selection))


_GRUB_VAR = re.compile(r'^\s*(?:export\s+)?GRUB_CMDLINE_LINUX(?:_DEFAULT)?=(["\']?)(.*)\1\s*$')


def grub_line_match(line: str):
    """The match of a GRUB_CMDLINE_LINUX(_DEFAULT) assignment (group 2: its value), or None."""
    return _GRUB_VAR.match(line)


_GRUB_ASSIGN = re.compile(r"^\s*(?:export\s+)?GRUB_CMDLINE_LINUX(?:_DEFAULT)?=")


def grub_plain_assignment(raw: str) -> bool:
    """Whether a GRUB_CMDLINE_LINUX(_DEFAULT) line is `VAR="value"`, `VAR='value'` or `VAR=value` and nothing
    else, so taking a word out of the value keeps it valid shell with the same meaning otherwise."""
    match = grub_line_match(raw.rstrip("\r\n"))
    if match is None:
        return False
    quote, value = match.group(1), match.group(2)
    if quote == "'":
        return "'" not in value
    if quote == '"':
        return not re.search(r'(?<!\\)"', value)
    return not re.search(r"""[\s"'#;&|`$\\]""", value)


_REFERENCE = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def grub_value(line: str) -> tuple[str | None, str | None]:
    """(value, None): what the shell assigns on a GRUB_CMDLINE_LINUX(_DEFAULT) line (grub-mkconfig sources the
    file), quotes of any kind and their concatenation undone - or (None, why) when it cannot be read with
    confidence. shlex in POSIX mode reads quoted and concatenated words as sh does; what it reads differently
    (a command substitution, \\$ or \\` inside double quotes, a line continued on the next one) is refused."""
    rest = line[_GRUB_ASSIGN.match(line).end():].rstrip("\r\n")
    if not rest or rest[0] in " \t\r;&|<>()":
        return "", None  # `VAR= cmd` or `VAR=;` assigns nothing here
    refused = ("a command substitution - its output cannot be known" if "`" in rest or "$(" in rest else
               "an escaped $ - shlex keeps the backslash the shell drops" if "\\$" in rest else None)
    if refused:
        return None, refused
    lexer = shlex.shlex(rest, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split, lexer.commenters = True, ""  # sh: "#" starts a comment only at a word's start
    try:
        value = lexer.get_token()
    except ValueError as exc:
        return None, "%s - the value goes on over the next line or is cut" % str(exc).lower()
    if value is None:
        return "", None
    # A whole word ${NAME} or $NAME is dropped by the callers (GRUB's own variables); anything else expands to
    # what cannot be known here.
    if any("$" in word and not _REFERENCE.fullmatch(word) for word in value.split()):
        return None, "a variable reference inside a word - its value cannot be known"
    return value, None


def grub_value_lines(text: str | None) -> list[tuple[int, list[str] | None, list[str], str | None]]:
    """(line number, tokens or None, tokens as written, problem) of each GRUB_CMDLINE_LINUX(_DEFAULT) line.
    Tokens are the value split at white space, ${...} references dropped; None when the value cannot be read
    with confidence (problem says why). Tokens as written are the words of a plain `VAR="..."`, `VAR='...'` or
    `VAR=...` value - what adoption takes out of the line - and the read tokens where that form differs."""
    found = []
    for number, raw in enumerate(physical_lines(text or ""), start=1):
        line = raw.rstrip("\n")
        if not _GRUB_ASSIGN.match(line):
            continue
        value, problem = grub_value(line)
        match = grub_line_match(line)
        written = [t for t in match.group(2).split() if not t.startswith("$")] if match else []
        tokens = None if value is None else [t for t in value.split() if not t.startswith("$")]
        if tokens is not None and (not grub_plain_assignment(line) or len(written) != len(tokens)):
            written = list(tokens)
        found.append((number, tokens, written, problem))
    return found


def grub_token_lines(text: str | None) -> list[tuple[int, list[str]]]:
    """(line number, tokens) of each GRUB_CMDLINE_LINUX(_DEFAULT) line, with ${...} references dropped (a value
    that cannot be read with confidence gives its words as written)."""
    return [(number, written if tokens is None else tokens) for number, tokens, written, _p in grub_value_lines(text)]


def grub_tokens(text: str | None) -> list[str]:
    """Tokens of the GRUB_CMDLINE_LINUX(_DEFAULT) lines, with ${...} references dropped."""
    return [token for _number, tokens in grub_token_lines(text) for token in tokens]
