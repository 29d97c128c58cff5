"""A Proxmox-like Debian 13 virtual machine with a real VT-d IOMMU, under QEMU (TCG).

The disk image is built by this project (debootstrap, no downloads beyond the
package mirror) with the full linux-image-amd64 kernel (it has e1000e),
systemd, sshd, python3, initramfs-tools and GRUB as its real boot loader. GRUB is
installed from inside the guest on its first boot, so grub-probe sees a real disk.
The image is rebuilt only when its recipe changes. A test's guest resumes a guest saved
running after one boot of it (snapshot), on a qcow2 overlay of its own, so a fresh node costs
seconds, not a boot.

  python tests/e2e/vm.py build    # prints the base image path
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.sim.nodes import ssh_key  # noqa: E402
from tests.sim.podman import MACHINE_CACHE  # noqa: E402

VM_CACHE = MACHINE_CACHE / "vm"
MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
ROOT_UUID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
DISK_SIZE_MB = 3072
PACKAGES = [
    "linux-image-amd64", "systemd", "systemd-sysv", "udev", "openssh-server", "python3",
    "initramfs-tools", "grub-pc-bin", "grub2-common", "kmod", "iproute2", "pciutils", "e2fsprogs",
    # initramfs-tools' default compressor, as on a Proxmox VE node (without it, gzip; an update-initramfs took
    # ~160 s under TCG either way: its hooks, not the compressor, take the time).
    "zstd",
]
# Guest PCI layout: virtio-net for management, two identical e1000e (8086:10d3) ports, and an
# e1000 (8086:100e) pair as two functions of one slot - one IOMMU group (no ACS), for the
# "group not viable" case.
MGMT_SLOT, PORT_SLOTS, PAIR_SLOT = 3, (4, 5), 6
# What a kernel that died prints on the console. A boot that shows one is restarted (see
# Console); the known cause was kernel text patching racing between two vCPUs under
# multi-threaded TCG (the guest has one vCPU since).
PANIC = re.compile(r"(Kernel panic - not syncing|Oops: |BUG: kernel|general protection fault).*")
BOOT_START = "Linux version "
GUEST_CMDLINE = "console=ttyS0,115200n8 norandmaps init_on_alloc=0"

FILES = {
    "etc/fstab": "UUID=%s / ext4 errors=remount-ro 0 1\n" % ROOT_UUID,
    "etc/hostname": "pve-e2e\n",
    "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 pve-e2e\n",
    # A static address, as a Proxmox VE node's management network has (QEMU's user network: 10.0.2.0/24).
    "etc/systemd/network/10-mgmt.network": (
        "[Match]\nDriver=virtio_net\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n"),
    # The passthrough ports come up without addresses: not management paths.
    "etc/systemd/network/20-ports.network": (
        "[Match]\nDriver=e1000e\n\n[Link]\nRequiredForOnline=no\n\n"
        "[Network]\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n"),
    # GRUB_CMDLINE_LINUX, so the guide's own GRUB_CMDLINE_LINUX_DEFAULT line keeps them: the serial console
    # (the Console watcher reads it), and no address space randomization. QEMU 7.2's TCG keys its translated
    # code by virtual address: with randomization every new process translates ld.so and libc again
    # (measured in the guest: /bin/true 53 ms -> 14 ms, update-initramfs 110 s -> 48 s). init_on_alloc=0:
    # Debian's kernel zeroes every page it allocates, page cache too; emulated, zeroing is costly (see argv).
    "etc/default/grub": (
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=\"Proxmox-like Debian\"\n"
        "GRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX=\"%s\"\n"
        "GRUB_TERMINAL=serial\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n") % GUEST_CMDLINE,
    # Small initramfs images boot faster under emulation; built for real in the guest.
    "etc/initramfs-tools/conf.d/vfio-e2e.conf": "MODULES=dep\n",
}
# Units that only cost CPU in the single emulated vCPU, at boot or at any time during a test (apt's timers
# reach the network): masked.
MASKED = ["getty-static.service", "e2scrub_reap.service", "apt-daily.timer", "apt-daily-upgrade.timer",
          "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer"]
FIRST_BOOT = ("set -e; systemctl mask %s; grub-install --target=i386-pc /dev/vda; update-initramfs -u -k all; "
              "update-grub; rm -f /etc/ssh/ssh_host_*_key.pub.tmp; sync" % " ".join(MASKED))


def recipe_hash() -> str:
    # The recipe is the constants and the build function, not the VM plumbing around them.
    # The test key's public half is baked in: a machine with another key builds its own image.
    text = "\n".join([SUITE, MIRROR, ROOT_UUID, str(DISK_SIZE_MB), *PACKAGES, repr(sorted(FILES.items())),
                      FIRST_BOOT, inspect.getsource(make), ssh_key().with_suffix(".pub").read_text()])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_image() -> Path:
    return VM_CACHE / ("pve-e2e-%s.qcow2" % recipe_hash())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    """The end of an artefact (console log, playbook log), for failure messages that CI prints."""
    if not path.exists():
        return "(no %s)" % path
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=True, **kwargs)


class Console:
    """Follows a guest's serial console; on a panic during a boot, restarts the guest (up to
    RESTARTS times for one boot).

    A boot starts with the kernel's banner. A panic before the next banner ends that boot:
    QEMU is ended and started again on the same disk and port (a caller waiting for SSH or
    for a reboot only sees a slower boot); when that boot panics again RESTARTS times, the
    guest stays down and `failure` says why, so every wait gives up at once. The panic is
    the known TCG race (PLATFORM.md); two in a row were seen in CI while the machine was busy.
    """

    RESTARTS = 3

    def __init__(self, vm: VM) -> None:
        self.vm = vm
        self.failure: str | None = None
        self.panics: list[str] = []
        self.retries_this_boot = 0
        self.retry_banner_pending = False  # the banner of the retried boot is still the same boot
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.follow, daemon=True)

    def follow(self) -> None:
        offset = 0
        while not self.stop.is_set():
            try:
                with open(self.vm.console, errors="replace") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                    offset = handle.tell()
            except FileNotFoundError:
                chunk = ""
            for line in chunk.splitlines():
                self.line(line)
            self.stop.wait(0.5)

    def line(self, line: str) -> None:
        if BOOT_START in line:
            if self.retry_banner_pending:
                self.retry_banner_pending = False
            else:
                self.retries_this_boot = 0
        match = PANIC.search(line)
        if not match or self.failure:
            return
        self.panics.append(match.group(0))
        if self.retries_this_boot >= self.RESTARTS:
            self.failure = "the guest panicked %d times in a row (%s); %s ends with:\n%s" % (
                self.RESTARTS + 1, match.group(0), self.vm.console, tail(self.vm.console))
            self.vm.kill()
            return
        self.retries_this_boot += 1
        self.retry_banner_pending = True
        print("vm: panic on the console (%s), booting again" % match.group(0), flush=True)
        self.vm.restart()


class VM:
    """One QEMU process: started, reached over SSH on a loopback port, stopped by its PID."""

    def __init__(self, disk: Path, workdir: Path, kernel: Path | None = None, initrd: Path | None = None,
                 append: str | None = None, root: Path | None = None, extra: list[str] | None = None,
                 incoming: Path | None = None, qmp: bool = False) -> None:
        """root: run QEMU chrooted there (tests/e2e/qemu10.py; disk and workdir are below it);
        extra: further QEMU arguments (devices); incoming: a saved running guest (see snapshot) the first
        start resumes instead of booting; qmp: a QMP socket in workdir (to save the guest)."""
        self.disk, self.workdir = disk, workdir
        self.kernel, self.initrd, self.append = kernel, initrd, append
        self.root, self.extra = root, list(extra or [])
        self.incoming, self.qmp = incoming, (workdir / "qmp.sock" if qmp else None)
        self.port = free_port()
        self.console = workdir / "console.log"
        self.process: subprocess.Popen | None = None
        self.restarting = False
        self.watch = Console(self)

    def seen(self, path: Path) -> str:
        """A path as QEMU sees it (inside its chroot, when it has one)."""
        return "/" + str(path.relative_to(self.root)) if self.root else str(path)

    def argv(self) -> list[str]:
        argv = ["chroot", str(self.root)] if self.root else []
        argv += [
            "qemu-system-x86_64", "-machine", "q35,kernel-irqchip=split", "-accel", "tcg",
            # One vCPU: with two, kernel text patching (int3, then the new bytes) raced under
            # multi-threaded TCG - a CI run saw the same boot panic four times in a row. Without ERMS/FSRM
            # the guest zeroes and copies pages with `rep stosq`/`movsq` instead of byte-wise `rep stosb`,
            # which TCG runs one iteration at a time (with init_on_alloc=0, side by side: reboot to SSH
            # 108-119 s vs 122-167 s, 300 x /bin/true 7.3-8.0 s vs 9.4-12.0 s, update-initramfs 84-91 s vs
            # 90-97 s). (Not -svm: systemd's units then fail with result 'protocol'.)
            "-cpu", "max,-erms,-fsrm", "-smp", "1", "-m", "2048",
            "-device", "intel-iommu,intremap=on",
            "-drive", "file=%s,if=virtio,format=%s" % (self.seen(self.disk),
                                                       "raw" if self.disk.suffix == ".raw" else "qcow2"),
            "-netdev", "user,id=mgmt,hostfwd=tcp:127.0.0.1:%d-:22" % self.port,
            "-device", "virtio-net-pci,netdev=mgmt,addr=0x%x" % MGMT_SLOT,
            # Appended, so a restart after a panic keeps the evidence.
            "-chardev", "file,id=serial0,path=%s,append=on" % self.seen(self.console), "-serial", "chardev:serial0",
            "-display", "none", "-monitor", "none",
        ]
        if self.qmp:
            argv += ["-qmp", "unix:%s,server=on,wait=off" % self.seen(self.qmp)]
        for index, slot in enumerate(PORT_SLOTS):
            # restrict=on: the passthrough ports reach nothing outside the guest.
            argv += ["-netdev", "user,id=port%d,restrict=on" % index,
                     "-device", "e1000e,netdev=port%d,addr=0x%x" % (index, slot)]
        for function in (0, 1):
            argv += ["-netdev", "user,id=pair%d,restrict=on" % function,
                     "-device", "e1000,netdev=pair%d,addr=0x%x.%d%s" % (
                         function, PAIR_SLOT, function, ",multifunction=on" if function == 0 else "")]
        if self.kernel:
            argv += ["-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.append]
        if self.incoming:
            argv += ["-incoming", "exec:cat %s" % self.seen(self.incoming)]
        return argv + self.extra

    def _launch(self) -> None:
        with open(self.workdir / "qemu.stderr", "a") as stderr:
            self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=stderr)
        # Only the first start resumes the saved guest: its disk has moved on since, so a restart (after a
        # panic in a later boot) boots from that disk.
        self.incoming = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.console.exists():
            self.console.unlink()
        self._launch()
        self.watch.thread.start()

    def kill(self) -> None:
        """End our QEMU process by its PID."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def restart(self) -> None:
        self.restarting = True
        try:
            self.kill()
            self._launch()
        finally:
            self.restarting = False

    def check(self) -> None:
        """Raise at once when the guest is known to be dead."""
        if self.watch.failure:
            raise RuntimeError(self.watch.failure)

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-p", str(self.port), "-i", str(ssh_key()), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
                "-o", "BatchMode=yes", "root@127.0.0.1"]

    def ssh(self, command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv() + [command], capture_output=True, text=True, check=check,
                              timeout=timeout)

    def answers(self, wait: float = 30) -> bool:
        """Whether sshd greets on the forwarded port within `wait` seconds, over one TCP connection.

        QEMU's user networking accepts on the host side at once and holds the guest side until the guest
        answers, also after the host side gave up: every `ssh` tried before the guest's network is up reaches
        sshd later, and the guest then serves that backlog (about a second of its emulated CPU each) before the
        attempt that counts. One connection waiting for the banner leaves no backlog."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as probe:
                probe.settimeout(wait)
                return probe.recv(4) == b"SSH-"
        except OSError:  # refused (QEMU not listening yet), reset, or no banner within `wait`
            return False

    def wait_ssh(self, timeout: float = 600) -> float:
        """Seconds until a command runs over SSH."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.check()
            if self.process and self.process.poll() is not None and not self.restarting:
                raise RuntimeError("QEMU exited (%s); %s ends with:\n%s" % (
                    self.process.returncode, self.console, tail(self.console)))
            if not self.answers():
                time.sleep(1)
                continue
            try:
                if self.ssh("true", check=False, timeout=20).returncode == 0:
                    return time.monotonic() - start
            except subprocess.TimeoutExpired:
                pass
            time.sleep(2)
        raise RuntimeError("no SSH within %.0f s; %s ends with:\n%s" % (timeout, self.console, tail(self.console)))

    def stop(self, timeout: float = 120) -> None:
        """Power off from inside; end our QEMU process by its PID if it does not go."""
        self.watch.stop.set()
        if not self.process or self.process.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ssh("systemctl poweroff", check=False, timeout=20)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


@contextlib.contextmanager
def building(prefix: str, place: Path = VM_CACHE):
    """One build at a time on this machine (the cache is machine-wide), in a new directory below `place`;
    what a killed build left behind there - debootstrap's mounts of /proc and /sys in its root, a half-made
    tree - is taken away first."""
    VM_CACHE.mkdir(parents=True, exist_ok=True)
    with (VM_CACHE / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for leftover in place.glob(prefix + "*"):
            remove_tree(leftover)
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=place))
        try:
            yield work
        finally:
            remove_tree(work)


def remove_tree(tree: Path) -> None:
    """Unmount what is mounted below `tree`, deepest first, then remove it."""
    for mount in sorted(mounts_below(tree), key=len, reverse=True):
        run("umount", "--lazy", mount)
    shutil.rmtree(tree, ignore_errors=True)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path` (/proc/self/mounts escapes spaces and the like as octal)."""
    top = str(path.resolve())
    points = [line.split()[1].encode().decode("unicode_escape") for line in Path("/proc/self/mounts").read_text()
              .splitlines() if len(line.split()) > 1]
    return [point for point in points if point == top or point.startswith(top + "/")]


def build() -> Path:
    """Build the base image once per recipe; return its path."""
    target = base_image()
    if target.exists():
        return target
    with building("vm-build-") as work:
        if target.exists():  # built by another run while this one waited for the lock
            return target
        return make(target, work)


def make(target: Path, work: Path) -> Path:
    """debootstrap, the node's files and key, a raw disk, a first boot that installs GRUB; qcow2."""
    rootfs = work / "rootfs"
    print("vm: debootstrap %s (a few minutes)" % SUITE, flush=True)
    run("debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, str(rootfs), MIRROR,
        stdout=subprocess.DEVNULL)
    for rel, text in FILES.items():
        path = rootfs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    ssh_dir = rootfs / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(ssh_key().with_suffix(".pub"), ssh_dir / "authorized_keys")
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.exists():
        link.symlink_to("/usr/lib/systemd/system/systemd-networkd.service")
    (rootfs / "etc/machine-id").write_text("")
    for leftover in rootfs.glob("var/cache/apt/archives/*.deb"):
        leftover.unlink()
    kernel = sorted(rootfs.glob("boot/vmlinuz-*"))[-1]
    initrd = sorted(rootfs.glob("boot/initrd.img-*"))[-1]
    shutil.copy(kernel, work / "vmlinuz")
    shutil.copy(initrd, work / "initrd.img")

    disk = work / "disk.raw"
    part = work / "root.ext4"
    with open(disk, "wb") as handle:
        handle.truncate(DISK_SIZE_MB * 1024 * 1024)
    run("sfdisk", "--quiet", str(disk), input=b"label: dos\nstart=2048, type=83, bootable\n")
    run("mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", "root", "-d", str(rootfs), str(part),
        "%dM" % (DISK_SIZE_MB - 1))
    run("dd", "if=%s" % part, "of=%s" % disk, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none")
    part.unlink()
    shutil.rmtree(rootfs)

    print("vm: first boot to install GRUB from inside the guest", flush=True)
    vm = VM(disk, work, kernel=work / "vmlinuz", initrd=work / "initrd.img",
            append="root=UUID=%s rw %s" % (ROOT_UUID, GUEST_CMDLINE))
    vm.start()
    try:
        vm.wait_ssh()
        vm.ssh(FIRST_BOOT, timeout=900)
    finally:
        vm.stop()
    run("qemu-img", "convert", "-O", "qcow2", str(disk), str(work / "base.qcow2"))
    os.replace(work / "base.qcow2", target)
    return target


class Snapshot(NamedTuple):
    """A guest saved running, right after a boot settled: its disk (a read-only qcow2 overlay on the base image)
    and its RAM and device state (QEMU's migration stream). A test's guest is an overlay on `disk`, started
    with `-incoming` from `state`: it answers SSH within seconds instead of booting for over a minute."""

    disk: Path
    state: Path


def snapshot(base: Path, root: Path | None = None, extra: list[str] | None = None, backing: str | None = None
             ) -> Snapshot:
    """The saved guest for this base image, QEMU and device set; made once (one boot) and kept beside the base.

    root, extra: as for VM; the files go below root's `work` when QEMU runs chrooted (it sees only that),
    and `backing` is then the base's path as that QEMU sees it. Keyed by the base image's name (its recipe),
    QEMU's version and the QEMU arguments without the per-run port and paths: a guest is only ever resumed by
    the same machine it was saved from."""
    place = root / "work" if root else VM_CACHE
    probe = VM(Path("/DISK"), Path("/WORK"), extra=extra)
    argv = " ".join(probe.argv()).replace(str(probe.port), "PORT")
    version = subprocess.run((["chroot", str(root)] if root else []) + ["qemu-system-x86_64", "--version"],
                             capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\n".join([base.name, version, argv]).encode()).hexdigest()[:12]
    saved = Snapshot(place / ("booted-%s.qcow2" % key), place / ("booted-%s.state" % key))
    if saved.state.exists():
        return saved
    with building("snapshot-", place) as work:
        if saved.state.exists():  # saved by another run while this one waited for the lock
            return saved
        print("vm: booting once to save a running guest for the tests (%s)" % saved.state.name, flush=True)
        disk = overlay(base, work / "disk.qcow2", backing=backing)
        vm = VM(disk, work, root=root, extra=extra, qmp=True)
        vm.start()
        try:
            vm.wait_ssh()
            # Saved once the boot's work is done (udev's coldplug, the units): a resumed guest starts idle.
            vm.ssh("systemctl is-system-running --wait >/dev/null; udevadm settle; sync", check=False, timeout=600)
            qmp(vm, "migrate", uri="exec:cat > %s" % vm.seen(work / "state"))
            deadline = time.monotonic() + 300
            while (status := qmp(vm, "query-migrate").get("status")) not in ("completed", "failed"):
                if time.monotonic() > deadline:
                    raise RuntimeError("saving the guest took over 300 s (%s)" % status)
                time.sleep(0.5)
            if status != "completed":
                raise RuntimeError("saving the guest failed: %s" % qmp(vm, "query-migrate"))
            with contextlib.suppress(OSError, ValueError):  # QEMU may close the socket before it answers
                qmp(vm, "quit")
            vm.process.wait(timeout=60)
        finally:
            vm.watch.stop.set()
            vm.kill()
        os.replace(disk, saved.disk)  # the disk first: a state file is only there with its disk
        os.replace(work / "state", saved.state)
    return saved


def qmp(vm: VM, command: str, **arguments) -> dict:
    """One QMP command on the guest's socket; its return value."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(str(vm.qmp))
        stream = sock.makefile("rw")
        stream.readline()  # the greeting
        answer = {}
        for message in ({"execute": "qmp_capabilities"}, {"execute": command, "arguments": arguments}):
            stream.write(json.dumps(message) + "\n")
            stream.flush()
            while "return" not in (answer := json.loads(stream.readline())):  # events come in between
                if "error" in answer:
                    raise RuntimeError("QMP %s: %s" % (command, answer["error"]))
        return answer["return"]


def overlay(base: Path, path: Path, backing: str | None = None) -> Path:
    """A fresh node: a qcow2 overlay on the base image. `backing`: the base's path as the QEMU that
    runs the node sees it (a chroot's); this machine's qemu-img then does not open it (-u)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if backing is None:
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(path))
    else:
        run("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "qcow2", str(path),
            "%dM" % DISK_SIZE_MB)
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(build())
    else:
        sys.exit(__doc__)
