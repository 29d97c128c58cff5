"""Writes a Sphinx inventory for the labels our reference pages use in Ansible's docs.

antsibull-docs links ansible.builtin modules and Ansible's reference pages by label;
Sphinx resolves them from Ansible's published objects.inv, which this machine cannot
download. This file lists the labels the pages use, with their addresses under
https://docs.ansible.com/projects/ansible/devel/. A label missing here fails the build
(-W), so a new reference is added on purpose.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

LABELS = {
    "ansible_configuration_settings": ("reference_appendices/config.html", "Ansible Configuration Settings"),
    "common_return_values": ("reference_appendices/common_return_values.html", "Return Values"),
    # antsibull-docs' note on a module documented for an action plugin (passthrough_plan)
    "action_plugins": ("plugins/action.html", "Action plugins"),
    **{
        "ansible_collections.ansible.builtin.%s_module" % name: (
            "collections/ansible/builtin/%s_module.html" % name, "ansible.builtin.%s module" % name)
        for name in ("stat", "find", "copy", "template", "slurp", "command", "reboot")
    },
}


def inventory() -> bytes:
    header = b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
    header += b"# The remainder of this file is compressed using zlib.\n"
    lines = "".join("%s std:label -1 %s#%s %s\n" % (name, page, name.replace("_", "-").replace(".", "-"), title)
                    for name, (page, title) in sorted(LABELS.items()))
    return header + zlib.compress(lines.encode())


if __name__ == "__main__":
    Path(sys.argv[1]).write_bytes(inventory())
