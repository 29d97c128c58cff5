"""Property-based tests (Hypothesis) of the SR-IOV boot configuration (/etc/vfio-proxmox/sriov.conf): what the
role renders is read back exactly by the planner's reader, and any text at that path - comments, blank lines,
CRLF, no final newline, tabs, duplicates, very long or broken lines - is read without error, each PF once."""

from __future__ import annotations

from pathlib import Path

import jinja2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import recorded_pfs

TEMPLATE = Path(__file__).resolve().parents[4] / "roles" / "passthrough" / "templates" / "sriov.conf.j2"
FAST = settings(max_examples=150, deadline=None)
ADDRESS = st.tuples(st.integers(0, 0xFF), st.integers(0, 0x1F), st.integers(0, 7)).map(
    lambda t: "0000:%02x:%02x.%d" % t)
PCI_ID = st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)).map(lambda t: "%04x:%04x" % t)
VF_ARGS = st.lists(st.sampled_from([["mac", "02:00:00:00:00:01"], ["vlan", "10"], ["trust", "on"],
                                    ["spoofchk", "off"], ["state", "enable"]]), max_size=3).map(
    lambda ls: [w for pair in ls for w in pair])


@st.composite
def pfs(draw):
    addresses = draw(st.lists(ADDRESS, unique=True, max_size=4))
    return [{"address": a, "id": draw(PCI_ID), "vfs": draw(st.integers(0, 128)),
             "vf_driver": draw(st.sampled_from(["none", "vfio-pci", "host"])),
             "boot": [{"index": i, "args": draw(VF_ARGS)} for i in range(draw(st.integers(0, 3)))]}
            for a in addresses]


def render(planned: list[dict]) -> str:
    template = jinja2.Template(TEMPLATE.read_text(), keep_trailing_newline=True, trim_blocks=True)
    return template.render(ansible_managed="Ansible managed", passthrough_plan={"sriov": {"pfs": planned}})


@FAST
@given(pfs())
def test_what_the_role_renders_is_read_back_exactly(planned):
    assert recorded_pfs(render(planned)) == [{"address": p["address"], "id": p["id"], "vfs": p["vfs"]}
                                             for p in planned]


NOISE = st.sampled_from(["# a comment", "", "  \t ", "#pf 0000:09:00.0 8086:10c9 2 none", "vf 0000:04:00.0 0 mac",
                         "pf 0000:04:00.0 8086:1572 two none", "pf", "pf 0000:04:00.0", "x" * 5000,
                         "pf\t0000:05:00.0\t8086:1572\t3\tnone"])
END = st.sampled_from(["\n", "\r\n"])


@FAST
@given(pfs(), st.lists(st.tuples(NOISE, END), max_size=6), st.booleans(), st.booleans())
def test_any_text_is_read_without_error_and_each_pf_once(planned, noise, crlf, last_newline):
    text = render(planned)
    if crlf:
        text = text.replace("\n", "\r\n")
    text += "".join(a + b for a, b in noise)
    # The rendered lines again: an edit that repeats a PF line names it once, the first line wins.
    text += render(planned)
    if not last_newline:
        text = text.rstrip("\r\n")
    found = recorded_pfs(text)
    addresses = [p["address"] for p in found]
    assert len(addresses) == len(set(addresses))
    for pf in planned:
        assert {"address": pf["address"], "id": pf["id"], "vfs": pf["vfs"]} in found
    assert all(isinstance(p["vfs"], int) and not p["address"].startswith("#") for p in found)


@FAST
@given(st.text())
@example("pf 0000:04:00.0 8086:1572 \u00b2 none\n")  # a superscript two: str.isdigit() says yes, int() no
def test_arbitrary_text_never_breaks_the_reader(text):
    found = recorded_pfs(text)
    assert all(set(p) == {"address", "id", "vfs"} and isinstance(p["vfs"], int) for p in found)
