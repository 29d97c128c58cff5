# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Proxmox VE API through `pvesh` on a node: root, no credentials, JSON out."""

from __future__ import annotations

import json
from typing import Callable

# (argv) -> (rc, stdout, stderr), as AnsibleModule.run_command returns it
Runner = Callable[[list], tuple]


class PveshError(RuntimeError):
    def __init__(self, argv: list, message: str) -> None:
        super().__init__("%s: %s" % (" ".join(argv[:3]), message))
        self.message = message


class Pvesh:
    def __init__(self, run: Runner, binary: str, timeout: float | None = None) -> None:
        """timeout: seconds one call may take (coreutils `timeout`): a hung pmxcfs must not hang a wait."""
        self.run = run
        self.binary = binary
        self.timeout = timeout
        self.calls: list[list] = []

    def _call(self, verb: str, path: str, options: list | None = None) -> object:
        argv = [self.binary, verb, path, *(options or []), "--output-format", "json"]
        self.calls.append(argv)
        limit = ["timeout", "--kill-after=5", "%d" % max(1, self.timeout)] if self.timeout else []
        rc, out, err = self.run(limit + argv)
        if limit and rc in (124, 137):
            raise PveshError(argv, "no answer within %d s" % max(1, self.timeout))
        if rc != 0:
            raise PveshError(argv, (err or out or "exit code %d" % rc).strip())
        out = (out or "").strip()
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            pass
        # A worker started from the CLI (migrate, stopall) runs in the foreground and copies its task log to
        # stdout before the result (pve-common RESTEnvironment.pm fork_worker: $sync for the 'cli' type): the
        # result is the last line.
        try:
            return json.loads(out.splitlines()[-1])
        except ValueError:
            raise PveshError(argv, "output is not JSON: %s" % out[:200]) from None

    def get(self, path: str, options: list | None = None) -> object:
        return self._call("get", path, options)

    def create(self, path: str, options: list) -> object:
        """What the call returns: a task's UPID for a worker (migrate, stopall), else mostly None."""
        return self._call("create", path, options)

    def set(self, path: str, options: list) -> None:
        self._call("set", path, options)

    def delete(self, path: str) -> None:
        self._call("delete", path)
