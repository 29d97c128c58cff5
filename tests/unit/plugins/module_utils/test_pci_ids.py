"""modules.alias matching: the candidate modules of a device's modalias."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils._pci_ids import ModaliasIndex

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
