"""Property tests (Hypothesis) of the mapping parsers and the merge that keeps other nodes' entries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.proxmox import _mapping_entry, _vm_hostpci

NODES = st.sampled_from(["pve1", "pve2", "pve3", "node-4"])
HEX4 = st.text("0123456789abcdef", min_size=4, max_size=4)
ENTRY = st.builds(
    lambda node, bus, vendor, device, group: {"node": node, "path": "0000:%02x:00.0" % bus,
                                              "id": "%s:%s" % (vendor, device), "iommugroup": group},
    NODES, st.integers(0, 255), HEX4, HEX4, st.integers(0, 200))
# Whatever another tool left in the map: valid entries in any field order, or text we cannot read.
FOREIGN = st.one_of(
    ENTRY.map(lambda e: ",".join("%s=%s" % kv for kv in reversed(list(e.items())))),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))


@settings(max_examples=150, deadline=None)
@given(st.lists(FOREIGN, max_size=6), st.lists(ENTRY, max_size=4), st.lists(NODES, max_size=3, unique=True))
def test_a_write_keeps_every_other_nodes_entry_byte_for_byte(current, entries, nodes):
    entries = [e for e in entries if e["node"] in nodes]
    merged = _mapping_entry.merged(current, entries, nodes)
    kept = [t for t in current if (_mapping_entry.entry_nodes([t]) or [None])[0] not in nodes]
    assert merged[:len(kept)] == kept
    assert merged[len(kept):] == [_mapping_entry.format_entry(e) for e in entries]
    # deciding the same nodes again changes nothing more
    assert _mapping_entry.merged(merged, entries, nodes) == merged


@settings(max_examples=150, deadline=None)
@given(ENTRY, st.lists(st.sampled_from(["", ","]), max_size=3), st.booleans())
def test_an_entry_reads_the_same_in_any_field_order_with_empty_fields(entry, padding, upper):
    fields = ["%s=%s" % kv for kv in entry.items()]
    text = ",".join(reversed(fields)) + "".join(padding)
    assert _mapping_entry.parse_entry(text) == _mapping_entry.parse_entry(",".join(fields))
    formatted = _mapping_entry.format_entry(entry)
    assert _mapping_entry.format_entry(_mapping_entry.parse_entry(formatted)) == formatted


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=5000), st.booleans())
def test_a_description_is_accepted_only_if_proxmox_keeps_it_as_written(text, in_entry):
    problem = _mapping_entry.description_problem(text, in_entry)
    keeps = (len(text) <= 4096 and "\n" not in text and "\r" not in text and not (in_entry and "," in text)
             and all(ord(c) <= 0xFF for c in text))
    assert (problem is None) == keeps


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["mapping", "pcie", "rombar", "x-vga"]),
                       st.sampled_from(["wan", "1", "0", "on", "off", "yes", "No", "TRUE"]), min_size=1),
       st.lists(st.sampled_from(["", ","]), max_size=2))
def test_hostpci_values_compare_by_what_proxmox_reads(fields, padding):
    text = ",".join("%s=%s" % kv for kv in fields.items())
    shuffled = ",".join(reversed(text.split(","))) + "".join(padding)
    assert _vm_hostpci.same(text, shuffled)
