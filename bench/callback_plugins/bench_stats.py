# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark callback: tasks per host and wall time per task, written as JSON.

Used only by bench/run.py (enabled through the environment, never shipped in the
collection). It writes the file named by BENCH_STATS_FILE when the run ends.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_stats
type: aggregate
short_description: Tasks per host and wall time per task, for the benchmark
description:
  - Counts task results per host (loop items counted one by one) and the wall time
    of each task across all hosts, and writes them as JSON to E(BENCH_STATS_FILE).
requirements:
  - enabled through C(ANSIBLE_CALLBACKS_ENABLED)
"""

import json
import os
import time
from collections import defaultdict

from ansible.plugins.callback import CallbackBase

# Actions that run on the controller only: no SSH round trip to the node.
CONTROLLER_ACTIONS = frozenset((
    "assert", "debug", "fail", "meta", "set_fact", "include_tasks", "import_tasks", "include_role",
    "import_role", "validate_argument_spec", "add_host", "group_by", "include_vars", "pause",
))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_stats"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, int] = defaultdict(int)
        self.remote: dict[str, int] = defaultdict(int)
        self.task_seconds: dict[str, float] = defaultdict(float)
        self.current: str | None = None
        self.started = time.monotonic()

    def _switch(self, name: str) -> None:
        now = time.monotonic()
        if self.current is not None:
            self.task_seconds[self.current] += now - self.started
        self.current, self.started = name, now

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._switch(task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self._switch("handler: " + task.get_name())

    def _count(self, result, skipped: bool = False) -> None:
        if isinstance(result._result.get("results"), list):
            return  # a loop: its items were counted one by one
        host = result._host.get_name()
        self.tasks[host] += 1
        if not skipped and result._task.action.rsplit(".", 1)[-1] not in CONTROLLER_ACTIONS:
            self.remote[host] += 1

    def v2_runner_on_ok(self, result):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result)

    def v2_runner_on_skipped(self, result):
        self._count(result, skipped=True)

    def v2_runner_item_on_ok(self, result):
        self._count(result)

    def v2_runner_item_on_failed(self, result):
        self._count(result)

    def v2_runner_item_on_skipped(self, result):
        self._count(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        self._switch("")
        path = os.environ.get("BENCH_STATS_FILE")
        if not path:
            return
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"tasks": self.tasks, "remote_tasks": self.remote,
                       "task_seconds": {k: v for k, v in self.task_seconds.items() if k}}, handle, indent=1)
