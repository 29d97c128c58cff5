#!/usr/bin/python
# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: file_state
short_description: Report the state of several files in one round trip
version_added: "0.3.0"
description:
  - Reports, for each path, whether it exists, its type, mode, owner, group and (for a regular file)
    its SHA-1 checksum, and returns the text of the files named in O(read).
  - Read-only - C(changed) is always false. M(vfio.proxmox.pci_facts) reports the same for its
    O(vfio.proxmox.pci_facts#module:files) option, which is how the passthrough role sees everything
    it owns in the same round trip as discovery.
  - Symbolic links are reported as links, not followed.
author:
  - vfio.proxmox contributors (@vfio-proxmox)
options:
  paths:
    description: Absolute paths to look at. A path that does not exist is reported with RV(files.exists=false).
    type: list
    elements: path
    required: true
  read:
    description:
      - Paths (also listed in O(paths) or not) whose text is returned as well, decoded as UTF-8.
      - Meant for small files; a regular file larger than 1 MiB fails the task.
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reads only; behaves the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
seealso:
  - module: ansible.builtin.stat
    description: The state of one file, with many more details.
  - module: ansible.builtin.find
    description: Files matching patterns, with checksums.
"""

EXAMPLES = r"""
- name: Look at the files the passthrough role owns, and read its record
  vfio.proxmox.file_state:
    paths:
      - /etc/modprobe.d/vfio-proxmox.conf
      - /etc/modules-load.d/vfio-proxmox.conf
    read:
      - /etc/vfio-proxmox/state.json
  register: owned

- name: Show whether the modprobe file is there
  ansible.builtin.debug:
    msg: "{{ owned.files['/etc/modprobe.d/vfio-proxmox.conf'].exists }}"
"""

RETURN = r"""
files:
  description: Path to its state, for every path in O(paths) and O(read).
  returned: success
  type: dict
  contains:
    path:
      description: The path as given.
      type: str
    exists:
      description: Whether anything is at the path.
      type: bool
    type:
      description: V(file), V(directory), V(link) or V(other).
      type: str
      returned: when it exists
    mode:
      description: Permission bits as four octal digits.
      type: str
      returned: when it exists
    uid:
      description: Owner's numeric ID.
      type: int
      returned: when it exists
    gid:
      description: Group's numeric ID.
      type: int
      returned: when it exists
    checksum:
      description: SHA-1 of the content (what M(ansible.builtin.stat) and M(ansible.builtin.find) report).
      type: str
      returned: for regular files
    content:
      description: The text, decoded as UTF-8 (undecodable bytes replaced).
      type: str
      returned: for regular files named in O(read)
  sample:
    /etc/modprobe.d/vfio-proxmox.conf:
      path: /etc/modprobe.d/vfio-proxmox.conf
      exists: true
      type: file
      mode: "0644"
      uid: 0
      gid: 0
      checksum: 2aae6c35c94fcfb415dbe95f408b9ce91ee846ed
    /etc/vfio-proxmox/state.json:
      path: /etc/vfio-proxmox/state.json
      exists: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import files_state


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "required": True},
            "read": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        files = files_state(module.params["paths"], module.params["read"])
    except ValueError as exc:
        module.fail_json(msg="file_state: %s" % exc)
    module.exit_json(changed=False, files=files)


if __name__ == "__main__":
    main()
