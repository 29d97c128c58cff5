#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: kernel_cmdline
short_description: Add or remove tokens of a one-line kernel command line file
version_added: "0.3.0"
description:
  - Edits the first line of a kernel command line file such as C(/etc/kernel/cmdline), which
    C(proxmox-boot-tool refresh) copies to the boot entries of systemd-boot nodes.
  - The file is edited token by token, never templated - every foreign token, the C(root=) token
    and their order are kept; lines after the first are kept unchanged.
  - Tokens are split as the kernel splits its command line (C(lib/cmdline.c) C(next_arg)) - a quoted
    value with blanks inside, such as C(dyndbg="file x.c +p"), is one token. Every byte the edit does not
    need is kept - the blanks between tokens, the line end (CRLF, or no final newline) - so adding tokens
    and then taking them out with O(remove_recorded) gives the file back byte for byte.
  - A wanted C(key=value) token replaces every token with the same key in place (the originals are recorded
    and put back each in its place); other wanted tokens are appended after the last token. The C(root) key
    is never edited.
  - Refused before anything is written - a first line with a double quote that is never closed (a token
    appended there would be part of the quoted value), a wanted token with such a quote, and a wanted
    token that is on the line with a later token of the same key after it, such as C(iommu=pt ... iommu=soft)
    (the kernel applies both in that order). Keys are compared as the kernel compares them (C(-) and
    C(_) alike, a leading quote dropped).
  - Writes atomically and only when something changes.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  path:
    description: The command line file. It must exist - a node without one is not booted this way.
    type: path
    default: /etc/kernel/cmdline
  present:
    description: Tokens that must be on the command line, for example V(iommu=pt).
    type: list
    elements: str
    default: []
  absent:
    description: Exact tokens that must not be on the command line.
    type: list
    elements: str
    default: []
  record:
    description:
      - A file that remembers the tokens this module added (tokens already on the line are not recorded)
        and the original tokens they replaced, so that O(remove_recorded) later takes out exactly those,
        restores the originals, and touches no other token the node had before.
    type: path
  prune:
    description:
      - Tokens this module added earlier (listed in O(record)) that are no longer wanted - for example V(iommu=pt)
        after it was switched off. Each is taken out, the original token it replaced (same key) is put back in
        its place when the recorded token is still on the line, and the record forgets both. A token the record
        does not list is the node's own and stays, also one set by hand since on the same key.
    type: list
    elements: str
    version_added: "0.3.0"
  remove_recorded:
    description:
      - Remove the tokens listed in O(record) from the command line and put back, in place, the original
        tokens they replaced (for example V(intel_iommu=on,igfx_off)), then delete O(record).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports the change without writing.
  diff_mode:
    support: full
    description: Shows the command line before and after.
notes:
  - Run C(proxmox-boot-tool refresh) after a change so the boot entries carry the new line.
seealso:
  - name: Host Bootloader - Proxmox VE documentation
    description: How systemd-boot nodes take their command line from /etc/kernel/cmdline.
    link: https://pve.proxmox.com/pve-docs/chapter-sysadmin.html#sysboot_edit_kernel_cmdline
"""

EXAMPLES = r"""
- name: Ask for IOMMU passthrough mode on a systemd-boot node
  vfio.proxmox.kernel_cmdline:
    present: [iommu=pt]
  register: cmdline

- name: Add tokens and remember which ones were not there before
  vfio.proxmox.kernel_cmdline:
    present: [iommu=pt]
    record: /etc/vfio-proxmox/cmdline-added

- name: Later, take out exactly the tokens that were added
  vfio.proxmox.kernel_cmdline:
    record: /etc/vfio-proxmox/cmdline-added
    remove_recorded: true
"""

RETURN = r"""
before:
  description: The command line (first line) before the run.
  returned: success
  type: str
  sample: root=ZFS=rpool/ROOT/pve-1 boot=zfs
after:
  description: The command line after the run (what it would be, in check mode).
  returned: success
  type: str
  sample: root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt
added:
  description: Tokens added or put in place of a token with the same key.
  returned: success
  type: list
  elements: str
  sample: [iommu=pt]
removed:
  description: Tokens taken out, including those replaced by a wanted token with the same key.
  returned: success
  type: list
  elements: str
  sample: []
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import parse_record, record_text
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import (
    edit,
    overridden,
    prune_recorded,
    remove_recorded,
    replaced,
    token_key,
    unclosed_quote,
    validate,
)


def read_text(module: AnsibleModule, path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # CRLF stays as it is
            return handle.read()
    except OSError as exc:
        module.fail_json(msg="kernel_cmdline: %s %s cannot be read: %s" % (what, path, exc.strerror or exc))
    return ""  # not reached: fail_json exits


def write_atomic(module: AnsibleModule, path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    tmp = os.path.join(directory, ".%s.vfio-proxmox.tmp" % os.path.basename(path))
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    module.atomic_move(tmp, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/kernel/cmdline"},
            "present": {"type": "list", "elements": "str", "default": []},
            "absent": {"type": "list", "elements": "str", "default": []},
            "record": {"type": "path"},
            "remove_recorded": {"type": "bool", "default": False},
            "prune": {"type": "list", "elements": "str"},
        },
        required_if=[("remove_recorded", True, ("record",))],
        required_by={"prune": "record"},
        supports_check_mode=True,
    )
    path, present, record = module.params["path"], module.params["present"], module.params["record"]
    absent = list(module.params["absent"])
    old_record = None
    if record and os.path.exists(record):
        old_record = read_text(module, record, "record")
    added, restore = parse_record(old_record or "")
    remove = module.params["remove_recorded"]
    problems = validate(present, absent + (added if remove else []))
    content = read_text(module, path, "path")
    if not remove:
        # The token is there, so an edit leaves it; the kernel would apply the later one after it.
        problems += ["%s holds %s and, after it, %s - the kernel applies both in that order, so the later one may "
                     "undo it: remove one of them by hand" % (path, t, overridden(content, t))
                     for t in present if overridden(content, t)]
    if problems:
        module.fail_json(msg="kernel_cmdline: " + "; ".join(problems))
    if remove:
        undo = remove_recorded(content, added, restore)
        result = edit(undo["content"], present, absent)
        result.update(before=undo["before"], added=undo["added"] + result["added"],
                      removed=undo["removed"] + result["removed"])
        new_record = None
    else:
        pruned = prune_recorded(content, added, restore, module.params["prune"] or [])
        forgot = (pruned["kept"], pruned["kept_restore"]) != (added, restore)
        added, restore = pruned["kept"], pruned["kept_restore"]
        result = edit(pruned["content"], present, absent)
        new_record = old_record
        if record:
            # The originals of replaced tokens are remembered, so removal puts them back.
            text = record_text(added + [t for t in result["added"] if t not in added],
                               restore + [t for t in replaced(result, absent)
                                          if token_key(t) not in {token_key(r) for r in restore}])
            # Nothing left to remember after a prune: the record goes, as after remove_recorded.
            new_record = text if text is not None or forgot else old_record
        result.update(before=pruned["before"], removed=pruned["removed"] + result["removed"],
                      added=pruned["added"] + result["added"])
    changed = result["content"] != content
    record_changed = new_record != old_record
    if changed and unclosed_quote(content):
        module.fail_json(msg="kernel_cmdline: %s: %s" % (path, unclosed_quote(content)))

    if not module.check_mode:
        if changed:
            write_atomic(module, path, result["content"])
        if record_changed and new_record is None:
            os.unlink(record)
        elif record_changed:
            write_atomic(module, record, new_record)
    module.exit_json(
        changed=changed or record_changed,
        before=result["before"],
        after=result["after"],
        added=result["added"],
        removed=result["removed"],
        diff={"before": result["before"] + "\n", "after": result["after"] + "\n",
              "before_header": path, "after_header": path},
    )


if __name__ == "__main__":
    main()
