# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting hand-made passthrough configuration (passthrough_adopt), and giving it back.

Adoption takes over the hand-made lines that configure what the role configures itself: the
`ids=` of `options vfio-pci` (they become `id:` selections unless passthrough_devices is given),
vfio softdeps, blacklists of the selected devices' drivers and of the management NIC's driver,
the vfio module lists, and kernel parameters the role's plan writes itself. Each is commented out
(or, for a token on a longer line, taken out of the line); everything else stays and is named.
An exact copy of every file it edits is kept below the state directory first, and a manifest
records each file's checksum before and after, so a rollback puts the copies back byte for byte -
and refuses, before any write, when a file changed since.
"""

from __future__ import annotations

import json
import re

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import text_checksum
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import (
    kernel_args,
    normalize_module,
    param_key,
    physical_lines,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    ADOPT_DIR,
    ADOPT_MANIFEST,
    BLOCK_MARKER,
    CMDLINE_RECORD,
    GRUB_DEFAULT,
    INITRAMFS_MODULES,
    KERNEL_CMDLINE,
    grub_line_match,
    grub_plain_assignment,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import edit as edit_cmdline
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import remove_recorded

# Put in front of a line adoption comments out, so the admin sees who did it and why.
COMMENT = "#vfio.proxmox adopted# "
ROLE_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci", "vfio_virqfd")
# vfio-pci's parameters (drivers/vfio/pci/vfio_pci.c module_param*): a word after a "#" on an options line still
# reaches the kernel (kmod strips no trailing comments), so such a word is kept when the line is edited.
VFIO_PCI_PARAMS = ("nointxmask", "disable_vga", "disable_idle_d3", "enable_sriov", "disable_denylist")


def copy_of(path: str) -> str:
    """Where the exact copy of an adopted file is kept: its path below the state directory."""
    return ADOPT_DIR + path


def copy_dirs(paths: list[str]) -> list[str]:
    """Directories the copies need, parents first (the state directory itself excluded)."""
    dirs = set()
    for path in paths:
        parent = copy_of(path).rsplit("/", 1)[0]
        while parent.startswith(ADOPT_DIR):
            dirs.add(parent)
            parent = parent.rsplit("/", 1)[0]
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def rebuild_for(path: str) -> str | None:
    """What must be rebuilt for a change of this file to reach the next boot."""
    if path == GRUB_DEFAULT or path.startswith("/etc/default/grub.d/"):
        return "grub"
    if path == KERNEL_CMDLINE:
        return "refresh"
    if path.startswith("/etc/modprobe.d/") or path == INITRAMFS_MODULES:
        return "initramfs"
    return None


def manifest_text(files: dict, targets: list[dict], lines: list[dict], selection: list[dict]) -> str:
    data = {"_comment": "vfio.proxmox: files taken over from hand-made configuration (passthrough_adopt); "
                        "the originals are below %s and go back on passthrough_state=absent" % ADOPT_DIR,
            "files": files, "targets": targets, "lines": lines, "selection": selection}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def hand_made_ids(handmade: list[dict], loader: str | None) -> list[tuple[str, str]]:
    """(ids entry, where) of every ID the hand-made configuration binds to vfio-pci at boot, in every form
    _modconf reads (options lines, the initramfs module list, vfio-pci.ids= where the boot loader reads it);
    an entry is vendor:device, or every field (_modconf.spec_text) when it names more."""
    found = []
    for entry in handmade:
        where = "%s:%d" % (entry["file"], entry["line"])
        if entry["kind"] == "kernel_parameter" and not _counts(entry["file"], loader):
            continue
        found += [(i, where) for i in entry.get("ids") or []]
    return found


def _counts(path: str, loader: str | None) -> bool:
    """Whether a kernel parameter in this file reaches the kernel with this boot loader."""
    if path == KERNEL_CMDLINE:
        return loader == "systemd-boot"
    return loader == "grub"


class Adoption:
    """What adoption takes over and leaves, and the edited text of every file it touches."""

    def __init__(self, host: dict, manifest: dict) -> None:
        self.handmade = host.get("handmade") or []
        self.files = host.get("handmade_files") or {}
        self.manifest = manifest
        self.errors: list[str] = []
        self.take: list[dict] = []
        self.leave: list[dict] = []
        self.texts: dict[str, str] = {}
        self.resumed: list[str] = []

    def decide(self, selected: list[dict], tokens: list[str], loader: str | None) -> None:
        drivers = set()
        for device in selected:
            drivers |= {normalize_module(m) for m in [device.get("native_driver")] + device.get("modules", []) if m}
        for entry in self.handmade:
            action, why = self._action(entry, drivers, tokens, loader)
            item = {"file": entry["file"], "line": entry["line"], "text": entry["text"], "kind": entry["kind"],
                    "reason": why}
            if action and not entry["file"].startswith("/etc/"):
                action, item["reason"] = None, "not below /etc (a package's or a runtime file): left alone"
            if action:
                item["action"] = action
                self.take.append(item)
            else:
                self.leave.append(item)

    def _action(self, entry: dict, drivers: set, tokens: list[str], loader: str | None) -> tuple[str | None, str]:
        kind, text, module = entry["kind"], entry["text"], entry.get("module")
        if kind == "kernel_parameter":
            return self._parameter(entry, tokens, loader)
        rules = (
            (kind == "options" and module == "vfio_pci" and bool(entry.get("ids")), "drop",
             lambda: "the role binds the selected devices itself (ids %s)" % ",".join(entry["ids"])),
            (kind == "softdep" and bool(re.search(r"\bvfio[-_]pci\b", text)), "comment",
             lambda: "the role writes the softdeps of the devices it binds by ID"),
            (kind in ("blacklist", "install") and bool(entry.get("lockout")), "comment",
             lambda: "dropped: %s" % entry["problems"][0]),
            (kind == "blacklist" and module in drivers, "comment",
             lambda: "not needed: the role binds the selected devices to vfio-pci before %s can take them" % module),
            (kind == "load" and module in ROLE_MODULES and bool(entry.get("ids")), "comment",
             lambda: "the role lists the vfio modules and binds the selected devices itself (this line binds ids %s)"
             % ",".join(entry["ids"])),
            (kind == "load" and module in ROLE_MODULES, "comment",
             lambda: "dropped: %s" % entry["problems"][0] if module == "vfio_virqfd" and entry.get("problems")
             else "the role lists the vfio modules itself"),
            (kind == "blacklist", None, lambda: "left alone: %s drives no selected device" % module),
        )
        for applies, action, why in rules:
            if applies:
                return action, why()
        return None, "left alone: the role does not manage %s lines like this one" % kind

    def _parameter(self, entry: dict, tokens: list[str], loader: str | None) -> tuple[str | None, str]:
        token, path = entry["text"], entry["file"]
        if not _counts(path, loader):
            return None, "left alone: %s does not reach the kernel with %s" % (path, loader or "this boot loader")
        if entry.get("ids"):
            return "drop", "the role binds the selected devices itself (ids %s)" % ",".join(entry["ids"])
        if token in tokens:
            return "drop", "the role's plan writes %s itself" % token
        return None, "left alone: the role's plan does not write %s" % token

    # --- the edits --------------------------------------------------------
    def edits(self, recorded: tuple[list[str], list[str]]) -> dict[str, str]:
        """{path: new text} of every file with a line taken over; problems go to self.errors."""
        by_file: dict[str, list[dict]] = {}
        for item in self.take:
            by_file.setdefault(item["file"], []).append(item)
        texts = {}
        for path, items in sorted(by_file.items()):
            state = self.files.get(path) or {}
            problem = self._uneditable(path, state, recorded)
            if not problem and self.interrupted(path):
                self.resumed.append(
                    "completing an adoption that was interrupted after %s was written: %s still holds its original "
                    "text (sha1 %s, the same as its copy %s) - editing it now" % (
                        ADOPT_MANIFEST, path, state.get("checksum"), self.manifest["files"][path].get("copy")))
            if problem:
                self.errors.append("passthrough_adopt: cannot take over %s:%d (%r): %s" % (
                    path, items[0]["line"], items[0]["text"], problem))
                continue
            new, problem = edited(path, state["content"], items)
            if problem:
                self.errors.append("passthrough_adopt: %s" % problem)
            elif new != state["content"]:
                texts[path] = new
        return texts

    def interrupted(self, path: str) -> bool:
        """Whether the manifest names this file but the file still holds its original text, with its exact copy
        in place: owned_files writes the copies, then the manifest, then the files, so a run stopped in between
        leaves this, and adopting again completes it."""
        known = self.manifest["files"].get(path)
        state = self.files.get(path) or {}
        copy = self.files.get((known or {}).get("copy")) or {}
        return bool(known and state.get("checksum") and state.get("checksum") == known.get("original")
                    and known.get("original") != known.get("adopted") and copy.get("checksum") == known["original"])

    def _uneditable(self, path: str, state: dict, recorded: tuple[list[str], list[str]]) -> str | None:
        known = self.manifest["files"].get(path)
        content = state.get("content") or ""
        if self.interrupted(path):
            known = None  # the edit is made again; the manifest keeps the original's checksum and copy
        # An adopted file holds the role's own lines since; a new hand-made line may be adopted next to them.
        as_adopted = adopted_checksums(path, content, recorded) if state.get("content") is not None else set()
        problems = (
            (state.get("error"), lambda: "it cannot be read (%s)" % state["error"]),
            (not state.get("exists"), lambda: "pci_facts did not report the file (older version?)"),
            (state.get("type") != "file", lambda: "it is a %s, not a regular file - adoption would replace it; edit "
                                                  "it by hand" % state.get("type")),
            (state.get("content") is None, lambda: "it is not UTF-8 text - edit it by hand"),
            (known and known.get("adopted") not in as_adopted,
             lambda: "it changed since it was adopted (its original is %s) - roll back first, or remove the line by "
                     "hand" % known.get("copy")),
            (not known and not self.interrupted(path) and path == INITRAMFS_MODULES
             and BLOCK_MARKER.format(mark="BEGIN") in content,
             lambda: "it already holds the role's block - roll back (passthrough_state: absent) first, then adopt"),
            (not known and not self.interrupted(path) and path == KERNEL_CMDLINE and bool(recorded[0] or recorded[1]),
             lambda: "the role added tokens to it before (%s) - roll back (passthrough_state: absent) first, then "
                     "adopt" % CMDLINE_RECORD),
        )
        return next((message() for applies, message in problems if applies), None)


def edited(path: str, text: str, items: list[dict]) -> tuple[str, str | None]:
    """The file's text with the taken-over lines commented out or their tokens taken out."""
    if path == KERNEL_CMDLINE:
        return edit_cmdline(text, [], [i["text"] for i in items])["content"], None
    lines = physical_lines(text)
    comment, drop = set(), {}
    for item in items:
        span = _span(lines, item["line"]) if path.startswith("/etc/modprobe.d/") else [item["line"]]
        if item["action"] == "comment":
            comment.update(span)
        elif len(span) > 1:
            return text, ("cannot take over %s:%d (%r): the command continues over several lines - join it by hand"
                          % (path, item["line"], item["text"]))
        elif not path.startswith("/etc/modprobe.d/") and not grub_plain_assignment(lines[item["line"] - 1]):
            # Editing inside such a line would leave an open quote or change what follows it: update-grub breaks.
            return text, ("cannot take over %s:%d (%r): the line is not one plain assignment (a comment or a command "
                          "after the value) - take %r out by hand, or move what follows to a line of its own"
                          % (path, item["line"], item["text"], item["text"]))
        else:
            drop.setdefault(item["line"], []).append(item)
    out = []
    for number, raw in enumerate(lines, start=1):
        if number in comment:
            out.append(COMMENT + raw)
        elif number in drop:
            out += _drop(path, raw, drop[number])
        else:
            out.append(raw)
    return "".join(out), None


def _span(lines: list[str], start: int) -> list[int]:
    """Line numbers of the modprobe command that starts at `start` (backslash continuations)."""
    span = [start]
    while span[-1] <= len(lines) and lines[span[-1] - 1].split("#", 1)[0].rstrip().endswith("\\"):
        span.append(span[-1] + 1)
    return [n for n in span if n <= len(lines)]


def _drop(path: str, raw: str, items: list[dict]) -> list[str]:
    """A line without the taken-over words; a comment names them. An options line left empty is commented.
    The commented original always ends with a newline, so a last line without one is not joined to its edit;
    the edited line ends as the original did."""
    body, newline = (raw[:-1], "\n") if raw.endswith("\n") else (raw, "")
    if path.startswith("/etc/modprobe.d/"):
        head, hash_, tail = body.partition("#")
        words = head.replace("\t", " ").split(" ")
        words = [w for w in words if w]
        # kmod passes words after a "#" to the kernel too: the ids= among them go; vfio-pci's other
        # parameters stay, the rest of such a trailing comment goes with the original line.
        later = [w for w in (hash_ + tail).split() if param_key(kernel_args(w)[0][0] if kernel_args(w) else "")
                 in VFIO_PCI_PARAMS]
        kept = words[:2] + [w for w in words[2:] + later if not _is_ids(w)]
        if len(kept) <= 2:
            return [COMMENT + raw]
        return [COMMENT + body + "\n", " ".join(kept) + newline]
    match = grub_line_match(body)
    gone = {i["text"] for i in items}
    value = " ".join(t for t in match.group(2).split() if t not in gone)
    line = body[:match.start(2)] + value + body[match.end(2):]
    return [COMMENT + body + "\n", line + newline]


def _is_ids(word: str) -> bool:
    """Whether a word of an options line sets vfio-pci's ids (quoted or not, as the kernel splits it)."""
    args = kernel_args(word)
    return bool(args) and param_key(args[0][0]) == "ids"


def writes(adoption: dict, manifest: dict, files: dict, recorded: tuple[list[str], list[str]]) -> dict:
    """What owned_files does to adopt: {files (manifest first), copies, dirs, rebuild}. The checksum kept as
    `adopted` is of the text without the role's own lines, which the role adds to two of these files."""
    texts = adoption["texts"]
    if not texts:
        return {"files": [], "copies": [], "dirs": [], "rebuild": []}
    known_files = dict(manifest["files"])
    written, copies = [], []
    for path, text in sorted(texts.items()):
        known = known_files.get(path)
        if not known:
            copies.append({"path": path, "copy": copy_of(path)})
        known_files[path] = {"copy": copy_of(path), "original": known["original"] if known else files[path]["checksum"],
                             "adopted": text_checksum(without_role(path, text, recorded)), "rebuild": rebuild_for(path)}
        written.append({"path": path, "content": text, "mode": files[path]["mode"]})
    targets = {t["address"]: t for t in manifest["targets"] + adoption["targets"]}
    lines = manifest["lines"] + [{k: i[k] for k in ("file", "line", "text", "reason")} for i in adoption["take"]
                                 if {k: i[k] for k in ("file", "line", "text", "reason")} not in manifest["lines"]]
    selection = {i["id"]: i for i in manifest["selection"] + adoption["selection"]}
    record = {"path": ADOPT_MANIFEST, "content": manifest_text(
        known_files, sorted(targets.values(), key=lambda t: t["address"]), lines, list(selection.values())),
        "mode": "0644"}
    return {"files": [record] + written, "copies": copies, "dirs": copy_dirs([c["path"] for c in copies]),
            "rebuild": sorted({rebuild_for(p) for p in texts} - {None})}


def adopted_checksums(path: str, text: str, recorded: tuple[list[str], list[str]]) -> set[str]:
    """Checksums the text may have as adoption left it. blockinfile ends the last line with a newline before it
    adds the role's block to the initramfs module list, and keeps that newline when it removes the block, so a
    list adopted without a final newline may have gained one."""
    bare = without_role(path, text, recorded)
    found = {text_checksum(bare)}
    if path == INITRAMFS_MODULES and bare.endswith("\n"):
        found.add(text_checksum(bare[:-1]))
    return found


def without_role(path: str, text: str, recorded: tuple[list[str], list[str]]) -> str:
    """The text as adoption left it: the role's block (initramfs module list) or the tokens it recorded
    (/etc/kernel/cmdline) are edited into these two files after adoption, and taken out before the give-back."""
    if path == INITRAMFS_MODULES:
        lines, inside = [], False
        for line in physical_lines(text):
            if line.strip() == BLOCK_MARKER.format(mark="BEGIN"):
                inside = True
            elif line.strip() == BLOCK_MARKER.format(mark="END") and inside:
                inside = False
            elif not inside:
                lines.append(line)
        return "".join(lines)
    if path == KERNEL_CMDLINE and (recorded[0] or recorded[1]):
        return remove_recorded(text, recorded[0], recorded[1])["content"]
    return text


def give_back(manifest: dict, files: dict, recorded: tuple[list[str], list[str]]) -> tuple[list[dict], list[str]]:
    """([{path, backup, rebuild}], errors): every adopted file whose copy goes back, or why it cannot.
    `recorded`: the command line tokens the role added (and replaced), from kernel_cmdline's record."""
    restores, errors = [], []
    for path, known in sorted(manifest["files"].items()):
        state = files.get(path) or {}
        copy = files.get(known.get("copy")) or {}
        checksums = (adopted_checksums(path, state["content"], recorded) if state.get("content") is not None
                     else {state.get("checksum")})
        checksum = known.get("adopted") if known.get("adopted") in checksums else sorted(checksums)[0]
        if not copy.get("exists") and state.get("checksum") == known.get("original"):
            continue  # given back already (a rollback stopped before it removed the manifest)
        if not copy.get("exists"):
            errors.append("passthrough_state: absent cannot give back %s - its original copy %s is missing" % (
                path, known.get("copy")))
        elif not state.get("exists") or checksum not in (known.get("adopted"), known.get("original")):
            found = checksum if state.get("exists") else "none: removed"
            values = (path, found, known.get("adopted"), known.get("copy"))
            errors.append("passthrough_state: absent would overwrite %s, which changed since it was adopted (sha1 "
                          "%s without the role's own lines, adoption left %s) - compare it with its original %s and "
                          "put that back by hand, or undo the change" % values)
        else:
            restores.append({"path": path, "backup": known["copy"],
                             "rebuild": rebuild_for(path) if state.get("checksum") != known.get("original") else None})
    return restores, errors
