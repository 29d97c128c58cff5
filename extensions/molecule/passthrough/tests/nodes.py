"""What the testinfra tests of this scenario share: the simulated nodes and how to read them."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import yaml

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(REPO))
from tests.sim.podman import env as podman_env  # noqa: E402

CLUSTER = "molecule-passthrough"
INVENTORY = REPO / ".cache" / "nodes" / CLUSTER / "inventory.yml"
NODES = yaml.safe_load(INVENTORY.read_text())["all"]["hosts"] if INVENTORY.exists() else {}
os.environ.update(CONTAINERS_CONF=podman_env()["CONTAINERS_CONF"])  # podman exec with the project's config


def hosts(profile: str | None = None) -> list[str]:
    """testinfra host specs of every node, or of the nodes of one profile."""
    return ["podman://%s" % name for name, node in sorted(NODES.items())
            if profile is None or node["vfio_sim_profile"] == profile]


def profile(host) -> str:
    return NODES[host.backend.name]["vfio_sim_profile"]


def kmod_config(host) -> list[str]:
    return host.check_output("modprobe -c").splitlines()


def linux_lines(host) -> list[str]:
    return [line for line in host.file("/boot/grub/grub.cfg").content_string.splitlines()
            if re.match(r"\s*linux\s", line)]
