"""Fixtures for the real-boot tests: the base image, one guest, ansible runs against it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.e2e import qemu10  # noqa: E402
from tests.e2e import vm as vmlib  # noqa: E402
from tests.sim.nodes import ssh_key  # noqa: E402
from tests.sim.podman import CACHE  # noqa: E402

ARTEFACTS = CACHE / "e2e"
# A playbook that runs longer than this is stuck (the longest, with a reboot, takes ~5 min
# under TCG); it is ended so one hung guest cannot eat the whole CI budget.
PLAYBOOK_TIMEOUT = 1500
# A guest that stops answering drops the SSH connection after 2 minutes instead of never:
# QEMU's user networking keeps the host side of a dead guest's TCP connection open.
SSH_ARGS = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
            "-o ServerAliveInterval=10 -o ServerAliveCountMax=12")


class Guest:
    """A running guest plus helpers to run the collection's playbooks against it."""

    def __init__(self, name: str, base: Path, qemu_root: Path | None = None, extra: list[str] | None = None) -> None:
        """qemu_root: run Debian 13's QEMU from that chroot (tests/e2e/qemu10.py), with `extra` devices."""
        self.name = name
        self.dir = (qemu_root / "work" / name) if qemu_root else ARTEFACTS / name
        shutil.rmtree(self.dir, ignore_errors=True)  # the logs of an earlier run would mix with this one's
        self.dir.mkdir(parents=True)
        # Each guest resumes the same saved, booted guest (vmlib.snapshot) on its own overlay: no first boot.
        if qemu_root:
            disk, state = qemu10.guest(qemu_root, base, name, extra or [])
        else:
            saved = vmlib.snapshot(base)
            disk, state = vmlib.overlay(saved.disk, self.dir / "disk.qcow2"), saved.state
        self.vm = vmlib.VM(disk, self.dir, root=qemu_root, extra=extra, incoming=state)
        self.inventory = self.dir / "inventory.yml"
        self.runs = 0
        self.boot_seconds: list[float] = []

    def boot(self) -> None:
        """Resume the saved guest; its clock still says when it was saved, so it is set to this machine's."""
        self.vm.start()
        self.boot_seconds.append(self.vm.wait_ssh())
        self.vm.ssh("date -s @%.3f >/dev/null" % time.time())
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"pve-e2e": {
            "ansible_host": "127.0.0.1", "ansible_port": self.vm.port, "ansible_user": "root",
            "ansible_ssh_private_key_file": str(ssh_key()),
            "ansible_ssh_common_args": SSH_ARGS,
            "ansible_python_interpreter": "/usr/bin/python3"}}}}))

    def playbook(self, playbook: str, extra: dict | None = None, expect_rc: int = 0) -> str:
        """Run ansible-playbook; keep its log as an artefact; return its output."""
        self.runs += 1
        log = self.dir / ("%02d-%s.log" % (self.runs, playbook.rsplit("/", 1)[-1].replace(".yml", "")))
        argv = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.inventory), playbook]
        if extra:
            argv += ["-e", json.dumps(extra)]
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
        start = time.monotonic()
        # Own session, so a stuck run is ended with every process it started, and only those.
        # stdin from /dev/null: ansible-core refuses a non-blocking stdin, as a pytest-xdist worker's is.
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        stdout, stderr = self._wait(process, start)
        seconds = time.monotonic() - start
        log.write_text("# %s\n# rc=%d, %.0f s\n%s\n%s" % (
            " ".join(argv), process.returncode, seconds, stdout, stderr))
        self.vm.check()
        assert seconds < PLAYBOOK_TIMEOUT, "stuck for %.0f s, ended; %s ends with:\n%s\nconsole ends with:\n%s" % (
            seconds, log, vmlib.tail(log), vmlib.tail(self.vm.console))
        assert process.returncode == expect_rc, "rc %d; %s ends with:\n%s" % (process.returncode, log, vmlib.tail(log))
        return stdout

    def _wait(self, process: subprocess.Popen, start: float) -> tuple[str, str]:
        """The playbook's output; it is ended early when it runs too long or the guest died for good."""
        while True:
            try:
                return process.communicate(timeout=2)
            except subprocess.TimeoutExpired:
                if time.monotonic() - start > PLAYBOOK_TIMEOUT or self.vm.watch.failure:
                    os.killpg(process.pid, signal.SIGTERM)
                    return process.communicate()

    def module(self, name: str, args: dict, expect_failed: bool = False) -> dict:
        """Run one module of the collection in the guest (ad hoc); return its result."""
        self.runs += 1
        log = self.dir / ("%02d-%s.log" % (self.runs, name.rsplit(".", 1)[-1]))
        argv = [str(REPO / ".venv" / "bin" / "ansible"), "all", "-i", str(self.inventory), "-m", name,
                "-a", json.dumps(args)]
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
        done = subprocess.run(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=600, check=False)
        log.write_text("# %s\n# rc=%d\n%s\n%s" % (" ".join(argv), done.returncode, done.stdout, done.stderr))
        self.vm.check()
        result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["pve-e2e"]
        assert bool(result.get("failed")) == expect_failed, "%s: %s" % (log, result)
        return result

    def facts(self) -> dict:
        out = self.dir / "facts.json"
        self.playbook(str(REPO / "tests" / "e2e" / "playbooks" / "facts.yml"), {"facts_file": str(out)})
        return json.loads(out.read_text())

    def sh(self, command: str) -> str:
        return self.vm.ssh(command).stdout

    def reboot(self) -> None:
        """Reboot from inside and wait until the new boot answers."""
        boot_id = self.sh("cat /proc/sys/kernel/random/boot_id")
        self.vm.ssh("systemctl reboot", check=False, timeout=30)
        start = time.monotonic()
        while time.monotonic() - start < 600:
            time.sleep(3)
            self.vm.check()
            if not self.vm.answers():  # no SSH attempts piling up in QEMU's networking while the guest boots
                continue
            try:
                done = self.vm.ssh("cat /proc/sys/kernel/random/boot_id", check=False, timeout=20)
            except subprocess.TimeoutExpired:
                continue
            if done.returncode == 0 and done.stdout != boot_id:
                self.boot_seconds.append(time.monotonic() - start)
                return
        raise RuntimeError("the guest did not come back within 600 s; %s ends with:\n%s" % (
            self.vm.console, vmlib.tail(self.vm.console)))

    @contextlib.contextmanager
    def holding_group(self, group: str):
        """A stand-in for a running VM's QEMU: a process holding /dev/vfio/<group> open; yields its PID."""
        pid = self.sh("nohup python3 -c 'import os, time; os.open(\"/dev/vfio/%s\", os.O_RDWR); time.sleep(900)' "
                      ">/dev/null 2>&1 & echo $!" % group).strip()
        try:
            self.sh("for i in $(seq 50); do ls -l /proc/%s/fd | grep -q /dev/vfio/%s && exit 0; sleep 0.2; done; "
                    "exit 1" % (pid, group))
            yield pid
        finally:
            self.sh("kill %s; while kill -0 %s 2>/dev/null; do sleep 0.2; done" % (pid, pid))

    def driver(self, address: str) -> str | None:
        out = self.sh("readlink /sys/bus/pci/devices/%s/driver || true" % address).strip()
        return out.rsplit("/", 1)[-1] if out else None


@pytest.fixture(scope="session")
def base_image() -> Path:
    return vmlib.build()


@pytest.fixture(scope="module")
def guest_factory(base_image, request):
    guests: list[Guest] = []

    def make(name: str, qemu_root: Path | None = None, extra: list[str] | None = None) -> Guest:
        guest = Guest(name, base_image, qemu_root, extra)
        guests.append(guest)
        guest.boot()
        return guest

    yield make
    failed = request.session.testsfailed
    for guest in guests:
        guest.vm.stop()
        if failed:
            print("\ne2e artefacts (console log, playbook logs): %s" % guest.dir)
