# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Token edits of a one-line kernel command line (/etc/kernel/cmdline).

Only the first line is a command line; any further lines are kept as they are.
Foreign tokens keep their order; a wanted `key=value` replaces a token with the
same key in place, anything else wanted is appended.
"""

from __future__ import annotations

# Tokens the node cannot boot without: never removed or rewritten by this module.
PROTECTED_KEYS = ("root",)


def token_key(token: str) -> str:
    return token.split("=", 1)[0]


def replaced(result: dict, absent: list[str]) -> list[str]:
    """Tokens an edit took out only because a wanted token with the same key took their place."""
    keys = {token_key(t) for t in result["added"] if "=" in t}
    return [t for t in result["removed"] if t not in absent and "=" in t and token_key(t) in keys]


def remove_recorded(content: str, added: list[str], restore: list[str]) -> dict:
    """Put the replaced originals back in place, then take out what was added."""
    first = edit(content, restore, [])
    second = edit(first["content"], [], added)
    return {"content": second["content"], "before": first["before"], "after": second["after"],
            "added": first["added"], "removed": first["removed"] + second["removed"]}


def switches_iommu_off(token: str) -> bool:
    """intel_iommu=off, amd_iommu=off, iommu=off (alone or among other values): no passthrough with it."""
    key, _sep, value = token.partition("=")
    return key in ("intel_iommu", "amd_iommu", "iommu") and "off" in value.split(",")


def prune_recorded(content: str, added: list[str], restore: list[str], prune: list[str]) -> dict:
    """Take out the recorded tokens in `prune`; where such a token is still on the line, put back in its place the
    original it replaced (same key). A token not in the record is the node's own and stays - also when it now holds
    a key the record's token once had (set by hand since): no original is put back over it. Also returns the
    record that is left (`kept`, `kept_restore`)."""
    line = content.partition("\n")[0].split()
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
    tokens = first.split()
    before = list(tokens)
    added, removed = [], []
    for token in absent:
        if token in tokens:
            tokens = [t for t in tokens if t != token]
            removed.append(token)
    for token in present:
        if token in tokens:
            continue
        if "=" in token:
            same_key = [i for i, t in enumerate(tokens) if "=" in t and token_key(t) == token_key(token)]
            if same_key:
                removed.extend(tokens[i] for i in same_key)
                tokens[same_key[0]] = token
                tokens = [t for i, t in enumerate(tokens) if i not in same_key[1:]]
                added.append(token)
                continue
        tokens.append(token)
        added.append(token)
    line = " ".join(tokens)
    return {
        "content": line + "\n" + rest if (newline or rest) else line + "\n",
        "before": " ".join(before),
        "after": line,
        "added": added,
        "removed": removed,
    }
