"""Runs `scripts/setup` and the unit tests on stock Debian 12 and 13 controllers, then
the collection, built and installed from the checkout, under Debian's own ansible-core.

Each controller is a container from a plain debootstrap root (its own python3,
nothing else; see images.py): the checkout's files go in through tar, then
setup installs the apt packages (python3-venv among them) and the venv exactly as
it would for an administrator, and the unit tests run in that venv (on Debian 13 they are
collected, see UNIT_TESTS). Both suites run side by side; a failure prints the controller's
log and fails.

Only this machine's outbound TLS goes through a proxy with its own CA: the
host's CA bundle is handed to pip (PIP_CERT). On an ordinary machine it is the
same Debian bundle the container has.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.sim import images  # noqa: E402
from tests.sim.podman import CACHE, ROOT, env  # noqa: E402

PYTEST_SUMMARY = re.compile(r"\d+ (passed|failed|tests collected).* in [0-9.]+s")
# The unit tests on each controller. Debian 12's run is the suite's only one on Python 3.11 with the newest
# ansible-core there (2.19). Debian 13's Python 3.13 with the newest ansible-core (2.21) is what the host's
# run has, so there every test module is imported in the venv setup made on Debian's own Python (collected),
# not run a second time (~4 CPU-minutes of the suite). The few OS programs the unit tests call (sh, lspci,
# shellcheck) are then only Debian 12's; Debian 13's sh runs the role's scripts on Molecule's PVE 9 nodes.
UNIT_TESTS = {"bookworm": "-n auto", "trixie": "--collect-only"}
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# What a controller prints first: its Python, the venv it made, the unit test summary.
SCRIPT = """set -eu
mkdir /src && tar -C /src -x && cd /src
python3 --version
ls /usr/bin/python3* | tr '\\n' ' '; echo
scripts/setup
.venv/bin/python -m pytest tests/unit -p no:cacheprovider -q UNIT_TESTS
# The README's other path: Debian's own ansible-core, the collection built and installed
# from this checkout, the discover playbook run on this container (it only reads).
apt-get install -y -qq --no-install-recommends ansible-core >/dev/null 2>&1
cd /tmp && /usr/bin/ansible-galaxy collection build /src >/dev/null
/usr/bin/ansible-galaxy collection install -p /tmp/collections vfio-proxmox-*.tar.gz >/dev/null
export ANSIBLE_COLLECTIONS_PATH=/tmp/collections
/usr/bin/ansible --version | head -1
/usr/bin/ansible-playbook -i localhost, -c local vfio.proxmox.discover > /tmp/discover.log
grep -q 'iommu:' /tmp/discover.log && tail -4 /tmp/discover.log
echo "debian ansible-core: $(/usr/bin/ansible --version | head -1) ran vfio.proxmox.discover"
"""


def checkout_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).exists()]


def container(suite: str) -> str:
    return "vfio-controller-%s" % suite


def run_controller(suite: str, files: list[str], cpu_shares: int | None) -> tuple[str, int, float, Path]:
    image = images.build(suite, "vfio-controller")
    log = CACHE / ("controller-%s.log" % suite)
    started = time.monotonic()
    # /tmp in memory: the unit tests make ~60,000 small files (fake node trees), the venv's builds go there too.
    command = ["podman", "run", "--rm", "-i", "--name", container(suite), "--tmpfs", "/tmp:rw,exec,mode=1777,size=4g"]
    if cpu_shares:
        command += ["--cpu-shares", str(cpu_shares)]
    if HOST_CA.exists():
        command += ["-v", "%s:/etc/vfio-host-ca.crt:ro" % HOST_CA, "-e", "PIP_CERT=/etc/vfio-host-ca.crt"]
    command += [image, "bash", "-c", SCRIPT.replace("UNIT_TESTS", UNIT_TESTS[suite])]
    with log.open("w") as out:
        tar = subprocess.Popen(["tar", "-C", str(ROOT), "-c", "--null", "-T", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
        tar.stdin.write("\0".join(files).encode())
        tar.stdin.close()
        code = subprocess.run(command, env=env(), stdin=tar.stdout, stdout=out, stderr=subprocess.STDOUT,
                              check=False).returncode
        tar.wait()
    return suite, code, time.monotonic() - started, log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", default=sorted(images.SUITES))
    parser.add_argument("--background", action="store_true",
                        help="the containers get an eighth of a CPU's share (cpu.shares 128) against the other "
                             "containers (the Molecule nodes): the full suite runs them beside Molecule and the "
                             "real-boot guest. Not the lowest: starved for seconds, the unit tests' timed waits "
                             "would time out")
    args = parser.parse_args()

    def stop(signum, _frame):
        # Ended by the suite (a later step failed): the containers this run started go with it.
        for suite in args.suites:
            subprocess.run(["podman", "rm", "-f", "-t", "0", container(suite)], env=env(), check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    files = checkout_files()
    for suite in args.suites:  # debootstrap one at a time, before the runs go side by side
        images.build(suite, "vfio-controller")
    failed = 0
    shares = 128 if args.background else None
    with ThreadPoolExecutor(len(args.suites)) as pool:
        for suite, code, seconds, log in pool.map(lambda s: run_controller(s, files, shares), args.suites):
            lines = log.read_text().splitlines()
            summary = next((line for line in reversed(lines) if PYTEST_SUMMARY.search(line)), "no pytest summary")
            summary += "; " + next((line for line in lines if line.startswith("debian ansible-core:")), "no Debian run")
            first = lines[0] if lines else "no output"
            verdict = "ok" if code == 0 else "FAILED"
            print("controller %s: %s in %.0f s (%s; %s)" % (suite, verdict, seconds, first, summary))
            if code != 0:
                failed += 1
                print("\n".join(lines[-60:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
