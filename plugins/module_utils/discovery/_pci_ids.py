# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names from pci.ids and candidate drivers from modules.alias."""

from __future__ import annotations

import fnmatch
import re

# The start of the next top-level line (a vendor or a class) after a section's first line.
_NEXT_TOP = re.compile(r"\n[^\t#\n]")


def _section(text: str, start: int) -> tuple[str, list[str]]:
    """The top-level line at `start` and the lines of its section, up to the next top-level line."""
    found = _NEXT_TOP.search(text, start)
    lines = text[start:found.start() if found else len(text)].split("\n")
    return lines[0], lines[1:]


def _entries(lines: list[str], width: int):
    """(id, name) of the one-tab lines; empty lines, comments and two-tab lines (subsystems, programming
    interfaces: not reported) are skipped."""
    for line in lines:
        if line.startswith("\t") and not line.startswith("\t\t"):
            yield line[1:1 + width].lower(), line[1 + width:].strip()


def parse_pci_ids(text: str, wanted_vendors: set[str]) -> dict:
    """Parse the pci.ids database, keeping only the vendors asked for.

    Returns {"vendors": {vid: name}, "devices": {(vid, did): name},
    "classes": {cc: name}, "subclasses": {(cc, sc): name}}.
    Lines end at "\n" as pciutils reads them (lib/names-parse.c), IDs are lower-case hex as the file writes
    them. Only the wanted vendors' sections and the classes are read line by line: the file has about 40 000
    lines, and every run of pci_facts pays for them.
    """
    text = "\n" + text
    vendors: dict[str, str] = {}
    devices: dict[tuple[str, str], str] = {}
    classes: dict[str, str] = {}
    subclasses: dict[tuple[str, str], str] = {}
    for vid in sorted(wanted_vendors):
        at = text.find("\n" + vid)
        while at >= 0:
            head, lines = _section(text, at + 1)
            if head[4:5] in (" ", "\t"):
                vendors[vid] = head[4:].strip()
                devices.update(((vid, did), name) for did, name in _entries(lines, 4))
            at = text.find("\n" + vid, at + 1)
    at = text.find("\nC ")
    while at >= 0:
        head, lines = _section(text, at + 1)
        klass = head[2:4].lower()
        classes[klass] = head[4:].strip()
        subclasses.update(((klass, sub), name) for sub, name in _entries(lines, 2))
        at = text.find("\nC ", at + 1)
    return {"vendors": vendors, "devices": devices, "classes": classes, "subclasses": subclasses}


def class_name(names: dict, pci_class: str | None) -> str | None:
    if not pci_class:
        return None
    sub = names["subclasses"].get((pci_class[:2], pci_class[2:4]))
    return sub or names["classes"].get(pci_class[:2])


# The vendor and device fields of a pci modalias: 8 hex digits each, or a pattern.
_IDS_IN_ALIAS = re.compile(r"^pci:v([^d]*)d([^s]*)sv")
_LITERAL = re.compile(r"^[0-9A-F]{8}$", re.IGNORECASE)


def _key(field: str) -> str:
    return field.upper() if _LITERAL.match(field) else "*"


class ModaliasIndex:
    """Matches a device's modalias against the pci lines of modules.alias.

    Patterns are indexed by their vendor and device fields (or "*" where a field is
    a pattern), so a device is compared only with the patterns that could match it,
    and a pattern is compiled only when first needed: a full kernel has ~10,000
    pci aliases, and compiling them all costs more than the rest of discovery.
    """

    def __init__(self, text: str) -> None:
        self._by_ids: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._compiled: dict[str, re.Pattern] = {}
        seen: set[tuple[str, str]] = set()
        # Identical functions (the ports of one card, a host's many VFs) share a modalias.
        self._answers: dict[str, list[str]] = {}
        for line in text.splitlines():
            if not line.startswith("alias pci:"):
                continue
            parts = line.split()
            if len(parts) != 3 or (parts[1], parts[2]) in seen:
                continue
            pattern, module = parts[1], parts[2]
            seen.add((pattern, module))
            match = _IDS_IN_ALIAS.match(pattern)
            key = (_key(match.group(1)), _key(match.group(2))) if match else ("*", "*")
            self._by_ids.setdefault(key, []).append((pattern, module))

    def _matches(self, pattern: str, modalias: str) -> bool:
        if pattern not in self._compiled:
            self._compiled[pattern] = re.compile(fnmatch.translate(pattern))
        return bool(self._compiled[pattern].match(modalias))

    def modules_for(self, modalias: str) -> list[str]:
        if modalias not in self._answers:
            match = _IDS_IN_ALIAS.match(modalias)
            vendor, device = (match.group(1).upper(), match.group(2).upper()) if match else ("", "")
            found: list[str] = []
            for key in ((vendor, device), (vendor, "*"), ("*", device), ("*", "*")):
                for pattern, module in self._by_ids.get(key, ()):
                    if module not in found and self._matches(pattern, modalias):
                        found.append(module)
            self._answers[modalias] = sorted(found)
        return list(self._answers[modalias])
