"""`patch_module_args` on every supported ansible-core.

ansible-core 2.19 ships `ansible.module_utils.testing.patch_module_args`; older
releases (2.14-2.18) read a module's arguments from `basic._ANSIBLE_ARGS`, which
this stand-in sets for the duration of the block.
"""

from __future__ import annotations

import contextlib
import json

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args=None):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved

__all__ = ["patch_module_args"]
