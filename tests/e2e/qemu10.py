"""Debian 13's QEMU (10.x), run from a debootstrapped Debian 13 root with chroot.

Debian 12's QEMU (7.2, this machine's) has no `igb` device; QEMU 8.0 and later emulate the
Intel 82576, an SR-IOV NIC (PF 8086:10c9, VFs 8086:10ca, up to 7). Built once per recipe
beside the disk image, machine-wide (tests/e2e/vm.py VM_CACHE; about 90 s, 380 MB). Guests started
from it keep their disk and console below its `work` directory, the only place the chrooted QEMU can see.

  python tests/e2e/qemu10.py build    # prints the root's path
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.vm import MIRROR, VM_CACHE, building, overlay, snapshot  # noqa: E402

SUITE = "trixie"
PACKAGES = ["qemu-system-x86", "qemu-utils"]


def root_path() -> Path:
    recipe = hashlib.sha256(("%s %s" % (SUITE, " ".join(PACKAGES))).encode()).hexdigest()[:12]
    return VM_CACHE / ("qemu10-%s" % recipe)


def build() -> Path:
    """The chroot with QEMU 10, built once per recipe."""
    root = root_path()
    if (root / "usr" / "bin" / "qemu-system-x86_64").exists():
        return root
    with building("qemu10-build-") as work:
        if (root / "usr" / "bin" / "qemu-system-x86_64").exists():  # built by another run meanwhile
            return root
        print("qemu10: debootstrap %s with %s (about 90 s)" % (SUITE, ", ".join(PACKAGES)), flush=True)
        subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE,
                        str(work / "root"), MIRROR], check=True, stdout=subprocess.DEVNULL)
        for leftover in (work / "root").glob("var/cache/apt/archives/*.deb"):
            leftover.unlink()
        (work / "root" / "work").mkdir()
        os.replace(work / "root", root)
    return root


def guest(root: Path, base: Path, name: str, extra: list[str]) -> tuple[Path, Path]:
    """A guest's disk - a qcow2 overlay on the saved running guest (vm.snapshot) - and that guest's state, all
    inside the chroot (the base image hard-linked, not copied)."""
    inside = root / "work"
    linked = inside / "base.qcow2"
    if not linked.exists() or os.stat(linked).st_ino != os.stat(base).st_ino:
        if linked.exists():
            linked.unlink()
        os.link(base, linked)
    saved = snapshot(base, root=root, extra=extra, backing="/work/base.qcow2")
    return overlay(saved.disk, inside / name / "disk.qcow2", backing="/work/" + saved.disk.name), saved.state


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(build())
    else:
        sys.exit(__doc__)
