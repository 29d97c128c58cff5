"""Builds the test images without a registry: simulated Proxmox nodes, and
plain Debian controllers (python3 and nothing else, as a stock install has).

debootstrap a minimal Debian root file system and `podman import` it. The tag
carries a hash of the recipe, so an image is rebuilt only when the recipe
changes.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.sim.podman import CACHE, podman  # noqa: E402

# Debian 12 is the base of Proxmox VE 8, Debian 13 of Proxmox VE 9.
SUITES = {"bookworm": "pve8", "trixie": "pve9"}
NODE_PACKAGES = [
    "python3", "openssh-server", "kmod", "iproute2", "pciutils", "pci.ids",
    "initramfs-tools", "linux-image-cloud-amd64", "ca-certificates",
    # GRUB's tools, so update-grub writes a real /boot/grub/grub.cfg (no grub-install: no disk here).
    "grub2-common", "grub-pc-bin",
]
# A stock Debian controller: its own python3 and CA certificates, no venv module, no git.
CONTROLLER_PACKAGES = ["python3", "ca-certificates"]
KINDS = {"vfio-node": NODE_PACKAGES, "vfio-controller": CONTROLLER_PACKAGES}
MIRROR = "http://deb.debian.org/debian"


def recipe_hash(suite: str, kind: str = "vfio-node") -> str:
    recipe = "\n".join([suite, MIRROR, *KINDS[kind], Path(__file__).read_text()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def image_name(suite: str, kind: str = "vfio-node") -> str:
    return "localhost/%s:%s-%s" % (kind, suite, recipe_hash(suite, kind))


def exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def build(suite: str, kind: str = "vfio-node") -> str:
    name = image_name(suite, kind)
    if exists(name):
        return name
    # stderr: callers such as nodes.py print only the inventory path on stdout.
    print("images: building %s with debootstrap (about a minute)" % name, file=sys.stderr, flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="vfio-rootfs-", dir=CACHE))
    rootfs = workdir / "rootfs"
    try:
        subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(KINDS[kind]),
                        suite, str(rootfs), MIRROR], check=True, stdout=subprocess.DEVNULL)
        # Drop the package cache; sshd host keys are made at container start.
        for leftover in rootfs.glob("var/cache/apt/archives/*.deb"):
            leftover.unlink()
        for key in rootfs.glob("etc/ssh/ssh_host_*"):
            key.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "-", name, stdin=tar.stdout)
        tar.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", default=sorted(SUITES))
    parser.add_argument("--kind", choices=sorted(KINDS), default="vfio-node")
    args = parser.parse_args()
    for suite in args.suites:
        print(build(suite, args.kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
