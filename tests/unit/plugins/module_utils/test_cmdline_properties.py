"""Property-based tests (Hypothesis) of the /etc/kernel/cmdline token editor (plan/_cmdline.py) as kernel_cmdline
uses it: for any line of the node's own tokens (and any further lines, with or without a final newline), adding
the role's tokens and then pruning them gives the line back, a pruned token the role replaced comes back in its
place, and a token the role did not add is never taken out. For any line - blanks of every kind the kernel skips,
quoted values with blanks inside, CRLF, no final newline - the tokens are the parameters the kernel reads, and
adding then taking out the role's tokens gives the file back byte for byte."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import (
    edit,
    prune_recorded,
    remove_recorded,
    replaced,
    token_key,
    tokens,
    unclosed_quote,
)

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


# Any line a node may have: the node's tokens (quoted ones too, with blanks inside) between runs of every blank the
# kernel skips, also at the start and the end; then any line end or further lines.
BLANKS = st.text(alphabet=" \t\r\v\f", min_size=1, max_size=3)
QUOTED = st.tuples(KEYS, st.sampled_from(['="a b"', '="x\tc=1"', '=""'])).map("".join) | st.sampled_from(
    ['"iommu=soft x"', '"quiet"', 'dyndbg="file x.c +p"'])
FREE = st.text(alphabet='ab=,"', min_size=1, max_size=6).filter(lambda t: t.count('"') % 2 == 0 and '""' not in t)
PIECE = TOKEN | QUOTED | FREE
ENDING = st.sampled_from(["", "\n", "\r\n", "\nsecond line", "\nsecond  line\n", " \n#x\n"])
ROLE = st.lists(st.sampled_from(["intel_iommu=on", "iommu=pt", "amd_iommu=on", "kvm.ignore_msrs=1",
                                 "pcie_acs_override=downstream,multifunction", "vfio-pci.ids=8086:15f3"]),
                min_size=1, max_size=4, unique_by=lambda t: t.split("=")[0])


@st.composite
def node_lines(draw):
    pieces = draw(st.lists(PIECE, max_size=7))
    blanks = draw(st.lists(BLANKS, min_size=len(pieces) + 1, max_size=len(pieces) + 1))
    edges = draw(st.tuples(st.booleans(), st.booleans()))
    line = "".join(b + p for b, p in zip(blanks, pieces)) if edges[0] else " ".join(pieces)
    return line + (blanks[-1] if edges[1] else "")


def kernel_tokens(line: str) -> list[str]:
    """The raw text of each parameter as the kernel walks its command line: kernel/params.c parse_args() calls
    skip_spaces() and then lib/cmdline.c next_arg(), which skips a leading quote and toggles quoting on every
    quote until an unquoted blank ends the parameter (written here in the shape of that C code)."""
    found, args = [], line
    while True:
        args = args.lstrip(" \t\n\v\f\r")
        if not args:
            return found
        start, in_quote = 0, False
        if args[0] == '"':
            start, in_quote = 1, True
        i = start
        while i < len(args):
            if args[i] in " \t\n\v\f\r" and not in_quote:
                break
            if args[i] == '"':
                in_quote = not in_quote
            i += 1
        found.append(args[:i])
        args = args[i:]


@FAST
@given(line=node_lines() | st.text(alphabet=' \t\r\v\fab="=', max_size=20))
def test_tokens_are_the_parameters_the_kernel_reads(line):
    assert tokens(line + "\nnext line") == kernel_tokens(line)


@FAST
@given(line=node_lines(), ending=ENDING, wanted=ROLE)
def test_any_line_comes_back_byte_for_byte_after_the_roles_tokens_are_taken_out(line, ending, wanted):
    content = line + ending
    assume(unclosed_quote(content) is None)
    after, added, restore = added_by_role(content, wanted)
    assert all(t in tokens(after) for t in wanted)
    assert remove_recorded(after, added, restore)["content"] == content
    assert prune_recorded(after, added, restore, added)["content"] == content
    # What is not the first line is never touched.
    assert after.partition("\n")[1:] == content.partition("\n")[1:]


@FAST
@given(line=node_lines(), ending=ENDING, wanted=ROLE)
def test_an_edit_keeps_every_other_token_in_order_and_a_second_edit_changes_nothing(line, ending, wanted):
    content = line + ending
    assume(unclosed_quote(content) is None)
    after = edit(content, wanted, [])
    # A wanted token already on the line leaves its key alone (the planner refuses a later one of that key).
    keys = {token_key(t) for t in wanted if t not in tokens(content)}
    kept = [t for t in tokens(content) if t in wanted or "=" not in t or token_key(t) not in keys]
    assert [t for t in tokens(after["content"]) if t in kept or t not in wanted] == kept
    again = edit(after["content"], wanted, [])
    assert (again["content"], again["added"], again["removed"]) == (after["content"], [], [])


@FAST
@given(line=node_lines(), ending=ENDING)
def test_a_line_with_a_quote_never_closed_is_named_and_only_then(line, ending):
    broken = line + ' x="open' + ending
    assert unclosed_quote(broken) is not None and 'x="open'[2:] in unclosed_quote(broken)
    assert (unclosed_quote(line + ending) is None) == (line.count('"') % 2 == 0)
