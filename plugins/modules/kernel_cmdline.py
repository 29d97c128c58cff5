#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kernel_cmdline
short_description: Add or remove tokens of a one-line kernel command line file
version_added: "0.2.0"
description:
  - Edits the first line of a kernel command line file such as C(/etc/kernel/cmdline), which
    C(proxmox-boot-tool refresh) copies to the boot entries of systemd-boot nodes.
  - The file is edited token by token, never templated - every foreign token, the C(root=) token
    and their order are kept; lines after the first are kept unchanged.
  - A wanted C(key=value) token replaces a token with the same key in place; other wanted tokens are
    appended. The C(root) key is never edited.
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

- name: Remove the tokens added earlier
  vfio.proxmox.kernel_cmdline:
    absent: "{{ cmdline.added }}"
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

from ansible_collections.vfio.proxmox.plugins.module_utils._cmdline import edit, validate


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/kernel/cmdline"},
            "present": {"type": "list", "elements": "str", "default": []},
            "absent": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    path, present, absent = module.params["path"], module.params["present"], module.params["absent"]
    problems = validate(present, absent)
    if problems:
        module.fail_json(msg="kernel_cmdline: " + "; ".join(problems))
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except OSError as exc:
        module.fail_json(msg="kernel_cmdline: path %s cannot be read: %s" % (path, exc.strerror or exc))
    result = edit(content, present, absent)
    changed = result["content"] != content
    if changed and not module.check_mode:
        directory = os.path.dirname(path) or "."
        tmp = os.path.join(directory, ".%s.vfio-proxmox.tmp" % os.path.basename(path))
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(result["content"])
        module.atomic_move(tmp, path)
    module.exit_json(
        changed=changed,
        before=result["before"],
        after=result["after"],
        added=result["added"],
        removed=result["removed"],
        diff={"before": result["before"] + "\n", "after": result["after"] + "\n",
              "before_header": path, "after_header": path},
    )


if __name__ == "__main__":
    main()
