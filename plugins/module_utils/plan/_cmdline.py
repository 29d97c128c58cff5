# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Token edits of a one-line kernel command line (/etc/kernel/cmdline).

Only the first line is a command line; any further lines are kept as they are.
Foreign tokens keep their order; a wanted `key=value` replaces every token with the
same key in place, anything else wanted is appended after the last token.

Every byte the edit does not need to touch stays: the spacing between tokens (tabs,
runs of spaces), the line's end (CRLF, no final newline) and quoted tokens. So
adding tokens and taking them out again gives the file back byte for byte.
"""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import (
    kernel_arg_spans as spans,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import (
    kernel_arg_texts,
    kernel_args,
    param_key,
)

# Tokens the node cannot boot without: never removed or rewritten by this module.
PROTECTED_KEYS = ("root",)


def tokens(content: str) -> list[str]:
    """The tokens of the first line of a command line file, as the kernel splits them (quoted blanks kept)."""
    return kernel_arg_texts(content.partition("\n")[0])


def unclosed_quote(content: str) -> str | None:
    """Why the first line cannot be edited token by token, or None: a double quote that is never closed makes
    the kernel read everything after it as one value - a token appended there would not take effect."""
    line = content.partition("\n")[0]
    if line.count('"') % 2:
        return ("its command line has a double quote that is never closed (%r) - the kernel reads everything after "
                "it as one value; close or remove it by hand" % line[line.rfind('"'):][:60])
    return None


def overridden(content: str, token: str) -> str | None:
    """A token of the same key after `token` on the first line (`iommu=soft` after `iommu=pt`), or None. The kernel
    applies a line's parameters in order, so the later one may undo the wanted one, which an edit leaves alone
    because it is already there."""
    have = tokens(content)
    if "=" not in token or token not in have:
        return None
    last = len(have) - 1 - have[::-1].index(token)
    return next((t for t in have[last + 1:] if same_key(t, token) and t != token), None)


def token_key(token: str) -> str:
    """The parameter's name as the kernel compares it: before the first `=`, a leading quote not part of it
    (next_arg() skips it), "-" and "_" alike (kernel/params.c parameq)."""
    return param_key(token[1:].split("=", 1)[0] if token.startswith('"') else token.split("=", 1)[0])


def same_key(token: str, other: str) -> bool:
    """Whether two key=value tokens set the same parameter (kernel/params.c parameq: "-" and "_" alike)."""
    return "=" in token and "=" in other and token_key(token) == token_key(other)


def _drop(line: str, index: int) -> str:
    """The line without its token at `index`, and without the blanks that set it off from the token before it (or,
    for the first token, from the token after it): the reverse of _append."""
    where = spans(line)
    start, end = where[index]
    if index > 0:
        start = where[index - 1][1]
    elif index + 1 < len(where):
        end = where[index + 1][0]
    return line[:start] + line[end:]


def _append(line: str, token: str) -> str:
    """The line with `token` after its last token, one space between; blanks at the end of the line stay there."""
    where = spans(line)
    if not where:
        return token + line
    at = where[-1][1]
    return line[:at] + " " + token + line[at:]


def _put(line: str, index: int, token: str) -> str:
    start, end = spans(line)[index]
    return line[:start] + token + line[end:]


def _without(line: str, unwanted) -> str:
    """The line without every token for which `unwanted(token)` holds."""
    for index in reversed(range(len(spans(line)))):
        start, end = spans(line)[index]
        if unwanted(line[start:end]):
            line = _drop(line, index)
    return line


def replaced(result: dict, absent: list[str]) -> list[str]:
    """Tokens an edit took out only because a wanted token with the same key took their place (in line order,
    a token twice on the line twice)."""
    keys = {token_key(t) for t in result["added"] if "=" in t}
    return [t for t in result["removed"] if t not in absent and "=" in t and token_key(t) in keys]


def remove_recorded(content: str, added: list[str], restore: list[str]) -> dict:
    """Put the replaced originals back in place, then take out what was added.

    Where recorded tokens of a key are still on the line, the originals of that key go back in their places, in
    order (the edit put one recorded token where each original was). Where none is left, the originals are
    wanted as an edit would want them (replacing a token of that key, or appended)."""
    first, newline, rest = content.partition("\n")
    line, before, put_back, wanted = first, tokens(first), [], []
    for key in dict.fromkeys(token_key(t) for t in restore if "=" in t):
        originals = [t for t in restore if "=" in t and token_key(t) == key]
        places = [i for i, t in enumerate(tokens(line)) if t in added and "=" in t and token_key(t) == key]
        if not places:
            wanted += originals
        for number, index in enumerate(places):
            # More originals than places (a record of an earlier version, whose edit kept one token of a key): the
            # rest go back beside the last place, in their order - every original back, the last still last.
            last = number == len(places) - 1
            mine = originals[number:] if last else [originals[min(number, len(originals) - 1)]]
            line = _put(line, index, " ".join(mine))
            put_back += mine
    forward = edit(line + newline + rest, wanted, [])
    second = edit(forward["content"], [], added)
    return {"content": second["content"], "before": " ".join(before), "after": second["after"],
            "added": put_back + forward["added"], "removed": forward["removed"] + second["removed"]}


def switches_iommu_off(token: str) -> bool:
    """intel_iommu=off, amd_iommu=off, iommu=off (alone or among other values, quoted, with "-" for "_"): no
    passthrough with it."""
    args = kernel_args(token)
    if len(args) != 1 or args[0][1] is None:
        return False
    key, value = args[0]
    return param_key(key) in ("intel_iommu", "amd_iommu", "iommu") and "off" in value.split(",")


def prune_recorded(content: str, added: list[str], restore: list[str], prune: list[str]) -> dict:
    """Take out the recorded tokens in `prune`; where such a token is still on the line, put back in its place the
    original it replaced (same key). A token not in the record is the node's own and stays - also when it now holds
    a key the record's token once had (set by hand since): no original is put back over it. Also returns the
    record that is left (`kept`, `kept_restore`)."""
    line = tokens(content)
    gone = [t for t in added if t in prune]
    keys = {token_key(t) for t in gone if "=" in t}
    on_line = {token_key(t) for t in gone if "=" in t and t in line}
    back = [t for t in restore if "=" in t and token_key(t) in on_line]
    result = remove_recorded(content, gone, back)
    result.update(kept=[t for t in added if t not in gone],
                  kept_restore=[t for t in restore if not ("=" in t and token_key(t) in keys)])
    return result


def validate(present: list[str], absent: list[str]) -> list[str]:
    """Problems with the requested tokens, each naming the option and value."""
    problems = []
    for option, tokens in (("present", present), ("absent", absent)):
        for token in tokens:
            if not token or any(ch.isspace() for ch in token):
                problems.append("%s: %r is not a single kernel command line token" % (option, token))
            elif token.count('"') % 2:
                problems.append("%s: %r has a double quote that is never closed - the kernel would read the rest of "
                                "the line as its value" % (option, token))
            elif token_key(token) in PROTECTED_KEYS:
                problems.append("%s: %r would change the root file system token, which is never edited"
                                % (option, token))
    clash = sorted(set(present) & set(absent))
    if clash:
        problems.append("present and absent both name %s" % ", ".join(clash))
    keys = [token_key(t) for t in present if "=" in t]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        problems.append("present sets %s more than once" % ", ".join(dupes))
    return problems


def edit(content: str, present: list[str], absent: list[str]) -> dict:
    """Return {"content", "before", "after", "added", "removed"} for the edited file text."""
    first, newline, rest = content.partition("\n")
    line, before = first, tokens(first)
    added, removed = [], []
    for token in absent:
        if token in tokens(line):
            line = _without(line, lambda t, token=token: t == token)
            removed.append(token)
    for token in present:
        have = tokens(line)
        if token in have:
            continue
        places = [i for i, t in enumerate(have) if same_key(t, token)]
        for index in places:
            removed.append(have[index])
            line = _put(line, index, token)
        if not places:
            line = _append(line, token)
        added.append(token)
    return {
        "content": line + newline + rest,
        "before": " ".join(before),
        "after": " ".join(tokens(line)),
        "added": added,
        "removed": removed,
    }
