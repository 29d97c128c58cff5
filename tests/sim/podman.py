"""Podman as this project runs it: root, runc, cgroupfs, a project-local config.

The machine's /etc/containers is never touched: CONTAINERS_CONF points at a
file under the project's cache directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("VFIO_SIM_CACHE", ROOT / ".cache"))
# What outlives a clone, as podman keeps the node images machine-wide: the test SSH key and the real-boot
# suite's disk image and QEMU root, each keyed by what it is made from, so a fresh clone (CI) reuses them.
MACHINE_CACHE = Path(os.environ.get("VFIO_MACHINE_CACHE") or Path.home() / ".cache" / "vfio-proxmox")

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def env() -> dict[str, str]:
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return dict(os.environ, CONTAINERS_CONF=str(conf))


def podman(*args: str, check: bool = True, capture: bool = True, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=env(), check=check, text=stdin is None,
                          capture_output=capture, stdin=stdin)
