"""Property-based tests (Hypothesis) of the /etc/kernel/cmdline token editor (plan/_cmdline.py) as kernel_cmdline
uses it: for any line of the node's own tokens (and any further lines, with or without a final newline), adding
the role's tokens and then pruning them gives the line back, a pruned token the role replaced comes back in its
place, and a token the role did not add is never taken out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import edit, prune_recorded, replaced

FAST = settings(max_examples=200, deadline=None)
KEYS = st.sampled_from(["iommu", "intel_iommu", "amd_iommu", "quiet", "boot", "pcie_acs_override", "vfio-pci.ids",
                        "console", "nomodeset", "x"])
VALUES = st.sampled_from(["", "=pt", "=on", "=off", "=soft", "=on,igfx_off", "=downstream,multifunction",
                          "=8086:15f3", "=ttyS0,115200"])
TOKEN = st.tuples(KEYS, VALUES).map("".join)
REST = st.sampled_from(["", "\n", "second line\n", "second line"])


def tokens_line(tokens):
    return " ".join(["root=ZFS=rpool/ROOT/pve-1"] + tokens)


def added_by_role(content: str, wanted: list[str]) -> tuple[str, list[str], list[str]]:
    """What kernel_cmdline does with `present`: the new content and the record (added, replaced originals)."""
    result = edit(content, wanted, [])
    return result["content"], result["added"], replaced(result, [])


@FAST
@given(own=st.lists(TOKEN, max_size=6, unique_by=lambda t: t.split("=")[0]),
       wanted=st.lists(TOKEN, min_size=1, max_size=4, unique_by=lambda t: t.split("=")[0]), rest=REST)
def test_adding_then_pruning_everything_the_role_added_gives_the_line_back(own, wanted, rest):
    content = tokens_line(own) + "\n" + rest
    after, added, restore = added_by_role(content, wanted)
    back = prune_recorded(after, added, restore, added)
    assert back["content"] == content
    assert back["kept"] == [] and back["kept_restore"] == []


@FAST
@given(own=st.lists(TOKEN, max_size=6, unique_by=lambda t: t.split("=")[0]),
       wanted=st.lists(TOKEN, min_size=1, max_size=4, unique_by=lambda t: t.split("=")[0]),
       prune=st.lists(TOKEN, max_size=6), rest=REST)
def test_a_prune_never_takes_out_a_token_the_role_did_not_add(own, wanted, prune, rest):
    content = tokens_line(own) + "\n" + rest
    after, added, restore = added_by_role(content, wanted)
    result = prune_recorded(after, added, restore, prune)
    line = result["content"].split("\n", 1)[0].split()
    replaced_keys = {t.split("=")[0] for t in added if t in prune and "=" in t}
    for token in after.split("\n", 1)[0].split():
        if token not in added:
            assert token in line, (token, result)
    for token in own:  # the node's own token is there, or replaced by a role token that is still wanted
        assert token in line or (token in restore and token.split("=")[0] not in replaced_keys), (token, result)
    assert set(result["kept"]) == {t for t in added if t not in prune}
    assert result["content"].split("\n", 1)[1:] == after.split("\n", 1)[1:]  # further lines kept byte for byte
