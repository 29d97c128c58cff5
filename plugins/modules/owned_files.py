#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: owned_files
short_description: Write, remove and restore the files a role owns, in one round trip
version_added: "0.3.0"
description:
  - Creates directories, keeps exact copies of files, keeps aside foreign files found at owned paths,
    writes files with the given content and mode, removes files, puts kept-aside files back and removes
    directories that are empty - in that order, in one call.
  - The passthrough role renders its templates on the controller (they stay the one place each file's
    format is written) and hands the texts here, so a run that changes its files makes one round trip
    for all of them instead of several per file.
  - Every step compares first, so a second run with the same arguments reports no change. Files are
    written atomically (a temporary file in the same directory, then a rename) and owned by root when
    the module runs as root.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  directories:
    description: Directories to create (mode C(0755)) when missing, parents included.
    type: list
    elements: path
    default: []
  copies:
    description:
      - Files to copy before anything is written - bytes, mode, owner and times - to a path of your choice,
        for example below a state directory. An existing copy is never overwritten, so the first copy
        stays the original; a file that is gone fails the task before anything is written.
      - The passthrough role keeps the original of every hand-made file it adopts this way, and puts it back
        with O(restore).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file to copy.
        type: path
        required: true
      copy:
        description: Where the copy goes; its directory must exist (see O(directories)).
        type: path
        required: true
  backup:
    description:
      - Files to keep aside before they are overwritten, as C(<path>.vfio-proxmox-backup) with their mode,
        owner and times. An existing copy is never overwritten.
      - Below C(/etc/initramfs-tools/scripts/) the name ends in C(~) (C(<path>.vfio-proxmox-backup~)) -
        initramfs-tools runs every executable script there whose name has only letters, digits, C(.), C(_)
        and C(-), so a kept-aside script would still run at boot.
    type: list
    elements: path
    default: []
  files:
    description: Files to write, in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description: The whole text of the file.
        type: str
        required: true
      mode:
        description: Octal mode as a string, for example V("0644").
        type: str
        required: true
  remove:
    description: Files (or symbolic links) to remove when present. A directory at such a path fails the task.
    type: list
    elements: path
    default: []
  restore:
    description: Kept-aside files to put back in place; the copy is moved, so it is gone afterwards.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Where the file goes back to.
        type: path
        required: true
      backup:
        description: The copy kept aside.
        type: path
        required: true
  remove_empty_dirs:
    description: Directories to remove when they are empty, in this order (children first).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what would be created, written, removed and restored without touching anything.
  diff_mode:
    support: full
    description: Shows the text of each file before and after.
seealso:
  - module: ansible.builtin.copy
  - module: ansible.builtin.template
  - module: vfio.proxmox.file_state
"""

EXAMPLES = r"""
- name: Write two files and remove a third
  vfio.proxmox.owned_files:
    directories: [/etc/vfio-proxmox]
    files:
      - {path: /etc/modprobe.d/vfio-proxmox.conf, content: "options vfio-pci ids=8086:15f3\n", mode: "0644"}
      - {path: /etc/modules-load.d/vfio-proxmox.conf, content: "vfio\nvfio_iommu_type1\nvfio_pci\n", mode: "0644"}
    remove: [/etc/initramfs-tools/scripts/init-top/vfio-proxmox]

- name: Put a kept-aside file back and remove an empty directory
  vfio.proxmox.owned_files:
    restore:
      - {path: /etc/modprobe.d/vfio-proxmox.conf, backup: /etc/modprobe.d/vfio-proxmox.conf.vfio-proxmox-backup}
    remove_empty_dirs: [/etc/vfio-proxmox]
"""

RETURN = r"""
created_dirs:
  description: Directories created.
  returned: always
  type: list
  elements: str
copied:
  description: Files copied (by their path, not the copy's).
  returned: always
  type: list
  elements: str
backed_up:
  description: Files kept aside.
  returned: always
  type: list
  elements: str
written:
  description: Files written (their content or mode differed).
  returned: always
  type: list
  elements: str
  sample: [/etc/modprobe.d/vfio-proxmox.conf]
removed:
  description: Files removed.
  returned: always
  type: list
  elements: str
restored:
  description: Files put back from their copies.
  returned: always
  type: list
  elements: str
removed_dirs:
  description: Empty directories removed.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._write import WriteError, apply


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "path", "default": []},
            "copies": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True},
                "copy": {"type": "path", "required": True},
            }},
            "backup": {"type": "list", "elements": "path", "default": []},
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True},
                "content": {"type": "str", "required": True, "no_log": False},
                "mode": {"type": "str", "required": True},
            }},
            "remove": {"type": "list", "elements": "path", "default": []},
            "restore": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True},
                "backup": {"type": "path", "required": True},
            }},
            "remove_empty_dirs": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    paths = (params["directories"] + [p for c in params["copies"] for p in (c["path"], c["copy"])] + params["backup"]
             + [f["path"] for f in params["files"]] + params["remove"]
             + [p for r in params["restore"] for p in (r["path"], r["backup"])] + params["remove_empty_dirs"])
    relative = [p for p in paths if not os.path.isabs(p)]
    if relative:
        module.fail_json(msg="owned_files: paths must be absolute, got %s" % ", ".join(relative))
    for entry in params["files"]:
        try:
            mode = int(entry["mode"], 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o7777:
            module.fail_json(msg="owned_files: files[].mode %r of %s is not an octal mode such as 0644" % (
                entry["mode"], entry["path"]))
    try:
        result = apply(params["directories"], params["files"], params["backup"], params["remove"],
                       params["restore"], params["remove_empty_dirs"], module.check_mode, params["copies"])
    except WriteError as exc:
        module.fail_json(msg="owned_files: %s" % exc)
    if not module._diff:
        result["diff"] = []
    module.exit_json(**result)


if __name__ == "__main__":
    main()
