"""Fleet measurements: ansible runs against N simulated nodes, timed side by side.

Each phase is one real ansible / ansible-playbook process over SSH (pipelining
on, the project's ansible.cfg). Besides wall time it records, per host:
tasks and tasks that reach the node (bench_stats callback), SSH sessions the
node's sshd started (its VERBOSE log), and how often update-initramfs and
update-grub ran (counting wrappers installed on the bench nodes only).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import time
from pathlib import Path

import yaml

from tests.sim import nodes
from tests.sim.podman import podman

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "bench"
PROFILE = "guide-intel"
CALLS_LOG = "/var/log/vfio-bench-calls.log"
COUNTED_TOOLS = ("update-initramfs", "update-grub")

# A counting wrapper in front of the real tool (diverted aside, still run).
WRAPPER = """#!/bin/sh
# BENCHMARK COUNTER: logs the call, then runs the real tool.
echo "$(basename "$0")" >> %s
exec "$0.distrib" "$@"
""" % CALLS_LOG

ROLE_VARS = {
    # The guide's card, as in the README demo; the whole fleet in one batch (no reboots).
    "passthrough_devices": [{"interface": "enp2s0"}],
    "passthrough_bind_now": False,
    "passthrough_reboot": "never",
}

PHASES = {
    "ping": ["ansible", "all", "-m", "ansible.builtin.ping"],
    "discover": ["ansible-playbook", "vfio.proxmox.discover"],
    "role_first": ["ansible-playbook", "vfio.proxmox.passthrough"],
    "role_rerun": ["ansible-playbook", "vfio.proxmox.passthrough"],
    "baseline_first": ["ansible-playbook", str(REPO / "bench" / "baseline" / "guide.yml")],
    "baseline_rerun": ["ansible-playbook", str(REPO / "bench" / "baseline" / "guide.yml")],
}


class Fleet:
    """N fresh simulated nodes with counters, and timed runs against them."""

    def __init__(self, count: int, logs: Path) -> None:
        self.count, self.logs = count, logs
        self.inventory = nodes.up(CLUSTER, [PROFILE], count)
        self.names = sorted(yaml.safe_load(self.inventory.read_text())["all"]["hosts"])
        script = "set -e\n"
        for tool in COUNTED_TOOLS:
            path = "/usr/sbin/%s" % tool
            script += "dpkg-divert --quiet --local --rename --add %s\nprintf '%%s' '%s' > %s\nchmod 0755 %s\n" % (
                path, WRAPPER, path, path)
        self._each(lambda name: podman("exec", name, "/bin/sh", "-c", script))
        self.run("warmup", PHASES["ping"])  # opens the SSH control connections, not measured

    def _each(self, work) -> dict:
        """work(name) on every node, a few at a time (podman calls are mostly waiting)."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip(self.names, pool.map(work, self.names)))

    def _sessions(self) -> dict[str, int]:
        def count(name: str) -> int:
            log = podman("logs", name)
            return (log.stdout + log.stderr).count("Starting session:")
        return self._each(count)

    def _tool_calls(self) -> dict[str, dict[str, int]]:
        """Calls per tool per host since the last look; the log starts empty again."""
        def take(name: str) -> dict[str, int]:
            out = podman("exec", name, "/bin/sh", "-c", "cat %s 2>/dev/null; : > %s" % (CALLS_LOG, CALLS_LOG)).stdout
            return {tool: out.split().count(tool) for tool in COUNTED_TOOLS}
        return self._each(take)

    def run(self, phase: str, argv: list[str], extra: dict | None = None) -> dict:
        stats_file = self.logs / ("%s-n%d.stats.json" % (phase, self.count))
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_CALLBACK_PLUGINS=str(REPO / "bench" / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="bench_stats", BENCH_STATS_FILE=str(stats_file))
        full = [argv[0], "-i", str(self.inventory), *argv[1:]]
        if extra:
            full += ["-e", json.dumps(extra)]
        before = self._sessions()
        self._tool_calls()
        start = time.monotonic()
        done = subprocess.run(full, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
        log = self.logs / ("%s-n%d.log" % (phase, self.count))
        log.write_text("# %s\n# rc=%d %.2f s\n%s\n%s" % (" ".join(full), done.returncode, seconds,
                                                         done.stdout, done.stderr))
        if done.returncode != 0:
            raise SystemExit("bench: %s on %d nodes failed (rc %d), see %s" % (phase, self.count, done.returncode, log))
        after = self._sessions()
        calls = self._tool_calls()
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        return {
            "seconds": seconds,
            "tasks_per_host": _mean(stats.get("tasks", {}), self.names),
            "remote_tasks_per_host": _mean(stats.get("remote_tasks", {}), self.names),
            "ssh_sessions_per_host": sum(after[n] - before[n] for n in self.names) / self.count,
            "tool_calls_per_host": {tool: sum(calls[n][tool] for n in self.names) / self.count
                                    for tool in COUNTED_TOOLS},
            "task_seconds": stats.get("task_seconds", {}),
        }

    def down(self) -> None:
        nodes.down(CLUSTER)


def _mean(per_host: dict[str, int], names: list[str]) -> float | None:
    if not per_host:
        return None  # ad-hoc commands have no playbook stats
    return sum(per_host.get(n, 0) for n in names) / len(names)


def measure(count: int, logs: Path) -> dict[str, dict]:
    """One repetition on `count` nodes: every phase, each on nodes in the state it needs."""
    results = {}
    role_extra = dict(ROLE_VARS, passthrough_serial=count)
    fleet = Fleet(count, logs)
    try:
        for phase, extra in (("ping", None), ("discover", None), ("role_first", role_extra),
                             ("role_rerun", role_extra)):
            results[phase] = fleet.run(phase, PHASES[phase], extra)
    finally:
        fleet.down()
    fleet = Fleet(count, logs)  # the baseline starts from fresh nodes too
    try:
        for phase in ("baseline_first", "baseline_rerun"):
            results[phase] = fleet.run(phase, PHASES[phase])
    finally:
        fleet.down()
    return results
