"""Shared fixtures: the collection on sys.path, fake trees built from the profiles."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _expose_collection() -> None:
    """Make `ansible_collections.vfio.proxmox` importable from a plain checkout."""
    if REPO.parent.name == "vfio" and REPO.parent.parent.name == "ansible_collections":
        sys.path.insert(0, str(REPO.parents[2]))  # already inside a collection tree (ansible-test)
        return
    base = REPO / ".ansible" / "collections"
    link = base / "ansible_collections" / "vfio" / "proxmox"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists():
            shutil.rmtree(link)
        link.symlink_to(REPO)
    sys.path.insert(0, str(base))


_expose_collection()
sys.path.insert(0, str(REPO))

from tests.sim import fakeroot  # noqa: E402
from tests.sim.fakeroot import FakeNode  # noqa: E402


@pytest.fixture
def fake_node(tmp_path):
    """Factory: fake_node("guide-intel") -> FakeNode with a fresh tree."""
    def make(name: str, mutate=None) -> FakeNode:
        profile = fakeroot.load(name)
        if mutate:
            mutate(profile)
        return FakeNode(profile, Path(tempfile.mkdtemp(prefix=name + "-", dir=tmp_path)))
    return make


@pytest.fixture
def proxmox_commands(tmp_path) -> dict:
    """`pvesh`, `qm`, `ha-manager` and `corosync-quorumtool` as commands in tmp_path, each the TEST DOUBLE
    tests/sim/pvesh_double.py - the way the modules find them (their options of the same names)."""
    double = REPO / "tests" / "sim" / "pvesh_double.py"
    commands = {}
    for name, prefix in (("pvesh", ""), ("qm", " qm"), ("ha-manager", " ha-manager"),
                         ("corosync-quorumtool", " corosync-quorumtool")):
        command = tmp_path / name
        command.write_text('#!/bin/sh\nexec "%s" "%s"%s "$@"\n' % (sys.executable, double, prefix))
        command.chmod(0o755)
        commands[name] = str(command)
    return commands
