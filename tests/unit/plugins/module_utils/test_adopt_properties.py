"""Property-based tests (Hypothesis) of the hand-made configuration readers and adoption's editors: for arbitrary
file texts - no final newline, CRLF, tabs, comments, quotes, duplicate and very long lines - adopting then giving
back is byte-identical, adoption keeps the effective kernel command line and takes out exactly the vfio-pci ids it
names, and every form of a binding is seen."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._modconf import (
    _ids,
    kernel_args,
    kmod_commands,
    load_ids,
    modprobe_lines,
    param_key,
    physical_lines,
    spec_matches,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import grub_token_lines
from ansible_collections.vfio.proxmox.plugins.module_utils.features._adopt import COMMENT, edited

FAST = settings(max_examples=150, deadline=None)
HEX4 = st.integers(0, 0xFFFF).map(lambda n: "%04x" % n)
PAD = st.sampled_from(["", " ", "\t", "  "])
SEP = st.sampled_from([" ", "\t", "  ", " \t"])
END = st.sampled_from(["\n", "\r\n", ""])
NOISE = st.sampled_from(["# a comment", "blacklist pcspkr", "options snd_hda_intel power_save=0", "",
                         "softdep drm pre: i2c_core", "x" * 5000, "options vfio-pci disable_vga=1",
                         "alias pci:v* foo", "#options vfio-pci ids=dead:beef", "  \t  "])


def noise_lines():
    return st.lists(st.tuples(NOISE, END.filter(bool)), max_size=6).map(lambda ls: "".join(a + b for a, b in ls))


@st.composite
def options_file(draw):
    """A modprobe.d file with one vfio-pci ids line in one of its forms, somewhere between other lines."""
    ids = draw(st.lists(st.tuples(HEX4, HEX4).map(":".join), min_size=1, max_size=3))
    value = ",".join(ids)
    word = draw(st.sampled_from(["ids=%s", 'ids="%s"', '"ids=%s"'])) % value
    module = draw(st.sampled_from(["vfio-pci", "vfio_pci"]))
    others = draw(st.lists(st.sampled_from(["disable_vga=1", "nointxmask=1", "disable_idle_d3=Y"]), max_size=2))
    words = ["options", module] + others[:1] + [word] + others[1:]
    line = draw(PAD) + draw(SEP).join(words)
    if draw(st.booleans()):
        line += "  # " + draw(st.sampled_from(["the card", "x" * 3000, "passthrough"]))
    before, after = draw(noise_lines()), draw(noise_lines())
    text = before + line + (draw(END.filter(bool)) if after else draw(END)) + after
    return text, ids, len(physical_lines(before)) + 1


@FAST
@given(options_file())
def test_every_form_of_an_options_ids_line_is_seen_and_adoption_takes_exactly_its_ids(case):
    text, ids, number = case
    commands = dict(kmod_commands(text))
    assert _ids(commands.get(number)) == ids
    start = [n for n, _t, words in modprobe_lines(text) if words[:1] == ["options"] and "vfio" in words[1]]
    assert number in start
    new, problem = edited("/etc/modprobe.d/vfio.conf", text, [{"line": number, "action": "drop", "text": ""}])
    assert problem is None
    # No ids left anywhere kmod reads; every other line byte for byte; the other vfio-pci options kept.
    left = [c for _n, c in kmod_commands(new) if c.split()[:1] == ["options"]]
    assert all(_ids(c) == [] for c in left)
    old_lines, new_lines = physical_lines(text), physical_lines(new)
    assert new_lines[:number - 1] == old_lines[:number - 1]
    assert new_lines[number - 1].startswith(COMMENT)
    assert new_lines[number - 1][len(COMMENT):].rstrip("\n") == old_lines[number - 1].rstrip("\n")
    kept = {param_key(k) for c in left for k, _v in kernel_args(c.split(None, 2)[2] if len(c.split()) > 2 else "")}
    wanted = {param_key(k) for k, _v in kernel_args(old_lines[number - 1].split("#")[0].split(None, 2)[2])} - {"ids"}
    assert wanted <= kept
    # The rest of the file after the edited line is unchanged (an inserted line only shifts it).
    assert "".join(new_lines).endswith("".join(old_lines[number:]))
    assert new.endswith("\n") == text.endswith("\n") or not text.endswith("\n")


@st.composite
def grub_file(draw):
    tokens = draw(st.lists(st.sampled_from(["quiet", "iommu=pt", "intel_iommu=on", "root=ZFS=rpool/ROOT/pve-1",
                                            "boot=zfs", "splash", "x" * 2000, "iommu=pt"]), max_size=6))
    var = draw(st.sampled_from(["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"]))
    quote = draw(st.sampled_from(['"', "'"]))
    line = "%s=%s%s%s" % (var, quote, draw(SEP).join(tokens) if tokens else "", quote)
    before = draw(st.lists(st.sampled_from(["GRUB_DEFAULT=0", "# comment", "GRUB_TIMEOUT=5", ""]), max_size=4))
    head = "".join(b + "\n" for b in before)
    return head + line + draw(END), len(before) + 1, tokens


def effective(text: str, role: list[str]) -> dict:
    """The command line GRUB builds (LINUX then LINUX_DEFAULT, the role's tokens at the end of LINUX), as the
    kernel reads it: the last value of each parameter."""
    seen: dict = {}
    for _n, tokens in grub_token_lines(text):
        for token in tokens:
            key, _eq, value = token.partition("=")
            seen[param_key(key)] = value
    for token in role:
        key, _eq, value = token.partition("=")
        seen[param_key(key)] = value
    return seen


@FAST
@given(grub_file())
def test_adopting_a_grub_token_keeps_the_variable_and_the_effective_command_line(case):
    text, number, tokens = case
    if "iommu=pt" not in tokens:
        return
    new, problem = edited("/etc/default/grub", text, [{"line": number, "action": "drop", "text": "iommu=pt"}])
    assert problem is None
    lines = grub_token_lines(new)
    assert [t for n, ts in lines for t in ts if n == number] == []  # the commented original
    assert [t for _n, ts in lines for t in ts] == [t for t in tokens if t != "iommu=pt"]
    # The role writes iommu=pt itself: the same parameters reach the kernel with the same values.
    assert effective(new, ["iommu=pt"]) == effective(text, ["iommu=pt"])


@FAST
@given(st.text(alphabet=st.sampled_from(list("ab \t#\"'\\=:,\r\nvfiop_-ds0123")), max_size=300))
def test_any_text_is_read_without_error_and_a_whole_line_comment_gives_the_same_bytes_back(text):
    numbers = [n for n, _c in kmod_commands(text)]
    assert numbers == sorted(set(numbers))
    for _n, command in kmod_commands(text):
        _ids(command)
        kernel_args(command)
    assert "".join(physical_lines(text)) == text
    for number in range(1, len(physical_lines(text)) + 1):
        new, _problem = edited("/etc/modules", text, [{"line": number, "action": "comment", "text": ""}])
        lines = physical_lines(new)
        assert lines[number - 1] == COMMENT + physical_lines(text)[number - 1]
        assert new.replace(COMMENT, "", 1) == text if COMMENT not in text else True


@FAST
@given(HEX4, HEX4, st.sampled_from(["vfio_pci", "vfio-pci"]), st.sampled_from(["ids=%s", 'ids="%s"']))
def test_an_initramfs_module_line_binds_what_vfio_pci_would(vendor, device, module, form):
    words = [module, "disable_vga=1", form % ("%s:%s" % (vendor, device))]
    assert load_ids(words) == ["%s:%s" % (vendor, device)]
    assert spec_matches(load_ids(words)[0], {"vendor": vendor, "device": device, "class": "020000"})
