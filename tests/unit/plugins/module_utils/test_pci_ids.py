"""modules.alias matching: the candidate modules of a device's modalias."""

from __future__ import annotations

import fnmatch
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_ids import ModaliasIndex, parse_pci_ids
from tests.sim import fakeroot

ALIASES = """# Aliases extracted from modules themselves.
alias pci:v00008086d00001521sv*sd*bc*sc*i* igb
alias pci:v00008086d00001521sv*sd*bc*sc*i* igb
alias pci:v*d*sv*sd*bc02sc00i* vfio_pci_core_test
alias pci:v000010DEd*sv*sd*bc03sc*i* nvidiafb
alias usb:v05ACp*d*dc*dsc*dp*ic*isc*ip*in* apple_usb
"""
IGB = "pci:v00008086d00001521sv00008086sd00000001bc02sc00i00"


def test_matches_vendor_and_wildcard_patterns_once_each():
    index = ModaliasIndex(ALIASES)
    assert index.modules_for(IGB) == ["igb", "vfio_pci_core_test"]
    assert index.modules_for("pci:v000010DEd00001234sv0sd0bc03sc00i00") == ["nvidiafb"]
    assert index.modules_for("pci:v00001AF4d00001000sv0sd0bc01sc00i00") == []


def test_repeated_lookups_give_equal_independent_answers():
    index = ModaliasIndex(ALIASES)
    first = index.modules_for(IGB)
    first.append("changed by the caller")
    assert index.modules_for(IGB) == ["igb", "vfio_pci_core_test"]


def test_a_pattern_inside_the_vendor_or_device_field_still_matches():
    index = ModaliasIndex("alias pci:v00008086d000010D*sv*sd*bc*sc*i* e1000e_family\n"
                          "alias pci:v0000808?d00001521sv*sd*bc*sc*i* igb_like\n")
    assert index.modules_for("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00") == ["e1000e_family"]
    assert index.modules_for(IGB) == ["igb_like"]


def test_the_index_answers_as_fnmatch_over_every_line():
    lines = ["alias pci:v%sd%ssv*sd*bc%ssc*i* mod%d" % (vendor, device, cls, n)
             for n, (vendor, device, cls) in enumerate(
                 (v, d, c) for v in ("00008086", "000010DE", "*", "0000808*")
                 for d in ("00001521", "000010D3", "*", "0000152?") for c in ("02", "03", "*"))]
    index = ModaliasIndex("\n".join(lines))
    for modalias in (IGB, "pci:v00008086d000010D3sv0sd0bc02sc00i00", "pci:v000010DEd00001521sv0sd0bc03sc00i00",
                     "pci:v00001AF4d00001000sv0sd0bc01sc00i00", "pci:v00008086d00001522sv0sd0bc02sc00i00"):
        brute = sorted({line.split()[2] for line in lines if fnmatch.fnmatchcase(modalias, line.split()[1])})
        assert index.modules_for(modalias) == brute, modalias


# --- pci.ids: only the wanted sections are read, with the same answers as reading every line --------------

def _every_line(text: str, wanted_vendors: set[str]) -> dict:
    """The reference: every line in order, as pciutils' parser walks the file (lines end at "\\n")."""
    found = {"vendors": {}, "devices": {}, "classes": {}, "subclasses": {}}
    vendor = klass = None
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):
            vendor, klass = None, line[2:4]
            found["classes"][klass] = line[4:].strip()
        elif not line.startswith("\t"):
            klass, vendor = None, (line[:4] if line[:4] in wanted_vendors else None)
            if vendor:
                found["vendors"][vendor] = line[4:].strip()
        elif not line.startswith("\t\t") and vendor:
            found["devices"][(vendor, line[1:5])] = line[5:].strip()
        elif not line.startswith("\t\t") and klass:
            found["subclasses"][(klass, line[1:3])] = line[3:].strip()
    return found


_hex4 = st.text(alphabet="0123456789abcdef", min_size=4, max_size=4)
_hex2 = st.text(alphabet="0123456789abcdef", min_size=2, max_size=2)
_name = st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=12)
_noise = st.sampled_from(["", "# comment", "#\tC 02", "\t\t8086 0001  Sub", "\t\t00  Prog-if"])
_device_line = st.tuples(_hex4, _name).map(lambda d: "\t%s  %s" % d)
_subclass_line = st.tuples(_hex2, _name).map(lambda d: "\t%s  %s" % d)
_vendor = st.tuples(_hex4, _name, st.lists(st.one_of(_device_line, _noise), max_size=5)) \
    .map(lambda v: ["%s  %s" % (v[0], v[1])] + v[2])
_klass = st.tuples(_hex2, _name, st.lists(st.one_of(_subclass_line, _noise), max_size=5)) \
    .map(lambda c: ["C %s  %s" % (c[0], c[1])] + c[2])


@settings(max_examples=300)
@given(sections=st.lists(st.one_of(_vendor, _klass, _noise.map(lambda n: [n])), max_size=8),
       wanted=st.sets(st.one_of(_hex4, st.sampled_from(["8086", "1af4"])), max_size=3),
       final_newline=st.booleans())
def test_pci_ids_reads_what_reading_every_line_reads(sections, wanted, final_newline):
    text = "\n".join(line for section in sections for line in section) + ("\n" if final_newline else "")
    assert parse_pci_ids(text, wanted) == _every_line(text, wanted)


def test_the_real_pci_ids_reads_what_reading_every_line_reads():
    # The controllers' stock images have no pci.ids: the profiles' generated one stands in there.
    path = next((p for p in ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids") if os.path.exists(p)), None)
    if path:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    else:
        text = fakeroot.pci_ids(fakeroot.load("guide-intel"))
    wanted = {"8086", "1af4", "10de", "15b3", "1002", "14e4"}
    assert parse_pci_ids(text, wanted) == _every_line(text, wanted)
    assert parse_pci_ids(text, wanted)["devices"] and parse_pci_ids(text, wanted)["subclasses"]
