"""modules.alias matching: the candidate modules of a device's modalias."""

from __future__ import annotations

import fnmatch

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_ids import ModaliasIndex

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
