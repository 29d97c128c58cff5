"""Shared fixtures: the collection on sys.path, fake trees built from the profiles."""

from __future__ import annotations

import json
import os
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


class FakeNode:
    """A fake tree plus the command runner answering like that node."""

    def __init__(self, profile: dict, out: Path) -> None:
        self.profile = profile
        self.out = fakeroot.build(profile, out)
        self.commands = json.loads((out / "commands.json").read_text())
        self.calls: list[list[str]] = []

    @property
    def roots(self) -> dict[str, str]:
        return {"sysfs_root": str(self.out / "sys"), "procfs_root": str(self.out / "proc"),
                "etc_root": str(self.out / "root")}

    def which(self, name: str) -> str | None:
        known = {key.split()[0] for key, value in self.commands.items() if value is not None}
        return "/usr/sbin/%s" % name if name in known else None

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        key = " ".join([os.path.basename(argv[0])] + list(argv[1:]))
        if self.commands.get(key) is None:
            return 127, "", "%s: not simulated" % key
        return 0, self.commands[key], ""


@pytest.fixture
def fake_node(tmp_path):
    """Factory: fake_node("guide-intel") -> FakeNode with a fresh tree."""
    def make(name: str, mutate=None) -> FakeNode:
        profile = fakeroot.load(name)
        if mutate:
            mutate(profile)
        return FakeNode(profile, Path(tempfile.mkdtemp(prefix=name + "-", dir=tmp_path)))
    return make
