"""Simulated Proxmox VE nodes: one container per node, reached over real SSH.

Each node runs a Debian image (images.py) with sshd published on a loopback
port. Its hardware profile becomes a fake sysfs/procfs tree mounted read-only
at /fake (modules read it through sysfs_root=/fake/sys, procfs_root=/fake/proc),
while the node's own file system holds the profile's /etc files and real
network interfaces - veth ports named like the profile's NICs, bridges and
addresses - so `ip -j` inside the node tells the same story as the tree.

  nodes.py up --name demo --profile guide-intel --count 3   # prints the inventory path
  nodes.py down --name demo
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import ipaddress
import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.sim import fakeroot, images  # noqa: E402
from tests.sim.podman import CACHE, MACHINE_CACHE, podman  # noqa: E402

LABEL = "io.vfio-proxmox.sim"
FAKE = "/fake"

# Stands in for Proxmox's proxmox-boot-tool, which is not packaged in Debian.
PBT_DOUBLE = """#!/bin/sh
# TEST DOUBLE for proxmox-boot-tool (not in Debian). It logs every call and
# answers `status` with the simulated node's ESPs; `refresh` only logs.
echo "$*" >> /var/log/proxmox-boot-tool-double.log
case "$1" in
  status) cat /etc/vfio-sim/proxmox-boot-tool.status ;;
  refresh) echo "Running hook script 'proxmox-auto-removal'.. (test double)" ;;
  *) echo "proxmox-boot-tool test double: unsupported: $*" >&2; exit 2 ;;
esac
"""


# Stands in for zpool: ZFS cannot run in a container here (no zfs kernel module).
ZPOOL_DOUBLE = """#!/bin/sh
# TEST DOUBLE for zpool (no ZFS in a container). Answers `status -P` with the
# simulated node's pool layout; anything else is refused.
case "$*" in
  "status -P") cat /etc/vfio-sim/zpool.status ;;
  *) echo "zpool test double: unsupported: $*" >&2; exit 2 ;;
esac
"""


# Stands in for grub-probe, which cannot see a block device inside a container.
GRUB_PROBE_DOUBLE = """#!/bin/sh
# TEST DOUBLE for grub-probe (no block device in a container): answers like a
# BIOS node with an ext4 root on /dev/sda1, so update-grub writes a real grub.cfg.
target=""
for arg in "$@"; do
  case "$arg" in
    --target=*) target="${arg#--target=}" ;;
  esac
done
case "$target" in
  device) echo /dev/sda1 ;;
  fs) echo ext2 ;;
  fs_uuid) echo 0b1e6a3c-5b62-4f1a-9d3e-000000000001 ;;
  partmap) echo msdos ;;
  abstraction|cryptodisk_uuid|fs_label|partuuid) echo "" ;;
  drive) echo "(hd0,msdos1)" ;;
  compatibility_hint) echo "hd0,msdos1" ;;
  hints_string) echo "" ;;
  disk) echo /dev/sda ;;
  *) echo "grub-probe test double: unsupported target $target" >&2; exit 1 ;;
esac
"""


def ssh_key() -> Path:
    """The test key, machine-wide: the real-boot image has its public half baked in (tests/e2e/vm.py)."""
    key = MACHINE_CACHE / "ssh" / "id_ed25519"
    key.parent.mkdir(parents=True, exist_ok=True)
    with (key.parent / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs starting at once make one key pair, not half of two
        if not key.exists() or not key.with_suffix(".pub").exists():
            key.unlink(missing_ok=True)
            key.with_suffix(".pub").unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vfio-sim", "-f", str(key)],
                           check=True)
    return key


def network_script(profile: dict) -> str:
    """Shell run inside the node to build the profile's interfaces for real."""
    lines = ["set -e"]
    for index, iface in enumerate(fakeroot.l3_interfaces(profile)):
        name = iface["name"]
        if "kind" not in iface:
            lines.append("ip link add %s type veth peer name vsim%d" % (name, index))
            lines.append("ip link set vsim%d up" % index)
            if iface["mac"]:
                lines.append("ip link set %s address %s" % (name, iface["mac"]))
        elif iface["kind"] == "bridge":
            lines.append("ip link add %s type bridge" % name)
        else:
            raise SystemExit("profile %s: %s interfaces cannot be built in a container"
                             % (profile["name"], iface["kind"]))
    for lower, (upper, _kind) in fakeroot.masters(profile).items():
        lines.append("ip link set %s master %s" % (lower, upper))
    for iface in fakeroot.l3_interfaces(profile):
        if iface["state"] == "up":
            lines.append("ip link set %s up" % iface["name"])
        for cidr in iface["addresses"]:
            if ipaddress.ip_interface(cidr).version == 6:
                lines.append("ip -6 addr add %s dev %s nodad" % (cidr, iface["name"]))
            else:
                lines.append("ip -4 addr add %s dev %s" % (cidr, iface["name"]))
        # A second default route with a higher metric: the node's own (podman) route stays in use.
        for family, key in (("-4", "default_via"), ("-6", "default_via6")):
            if iface.get(key):
                lines.append("ip %s route add default via %s dev %s metric 100 onlink"
                             % (family, iface[key], iface["name"]))
    return "\n".join(lines) + "\n"


# Stand in for Proxmox's pvesh and qm: tests/sim/pvesh_double.py, with the cluster's shared state.
PVE_CLUSTER_DIR = "/var/lib/vfio-sim/pve-cluster"
# Every node's fake tree, read-only: where real pvesh proxies a call to another node, the double reads its tree.
PEER_TREES = "/var/lib/vfio-sim/peers"
PVESH_WRAPPER = """#!/bin/sh
# TEST DOUBLE for Proxmox VE's %%s (tests/sim/pvesh_double.py) - not Proxmox.
PVESH_DOUBLE_STATE=%s/state.json PVESH_DOUBLE_SYSFS=%s/sys PVESH_DOUBLE_PEER_ROOT=%s \
  exec python3 /usr/lib/vfio-sim/pvesh_double.py %%s"$@"
""" % (PVE_CLUSTER_DIR, FAKE, PEER_TREES)


# A simulated reboot (tests/sim/reboot_double.py) for nodes started with a booted tree: /fake is a link to
# the running kernel's tree, boots/0 before the reboot, boots/1 after it.
BOOTS = "/var/lib/vfio-sim/boots"
REBOOT_WRAPPER = """#!/bin/sh
# TEST DOUBLE for shutdown -r (tests/sim/reboot_double.py) - a simulated reboot, not a real one.
exec python3 /usr/lib/vfio-sim/reboot_double.py "$@"
"""
BOOT_ID_CAT = """#!/bin/sh
# TEST DOUBLE (tests/sim/nodes.py): a container's boot id is the host kernel's and never changes. For that one
# path this cat answers the simulated boot's id (tests/sim/reboot_double.py); anything else is the real cat.
if [ "$#" -eq 1 ] && [ "$1" = /proc/sys/kernel/random/boot_id ]; then exec /usr/bin/cat /var/lib/vfio-sim/boot_id; fi
exec /usr/bin/cat "$@"
"""


def reboot_doubles() -> dict[str, str]:
    return {"/usr/lib/vfio-sim/reboot_double.py": (Path(__file__).parent / "reboot_double.py").read_text(),
            "/usr/local/sbin/shutdown": REBOOT_WRAPPER, "/usr/local/bin/cat": BOOT_ID_CAT,
            "/var/lib/vfio-sim/boot_id": "00000000-0000-4000-8000-000000000000\n"}


def booted_profile(profile: dict, vfio: list[str]) -> dict:
    """The profile as a correct boot leaves it: the `vfio` addresses on vfio-pci, without their netdevs."""
    booted = json.loads(json.dumps(profile))
    for device in booted["devices"]:
        if device["address"] in vfio:
            device["driver"] = "vfio-pci"
            device["netdevs"] = []
    return booted


def pve_doubles() -> dict[str, str]:
    return {"/usr/lib/vfio-sim/pvesh_double.py": (Path(__file__).parent / "pvesh_double.py").read_text(),
            "/usr/bin/pvesh": PVESH_WRAPPER % ("pvesh", ""),
            "/usr/sbin/qm": PVESH_WRAPPER % ("qm", "qm "),
            "/usr/sbin/ha-manager": PVESH_WRAPPER % ("ha-manager", "ha-manager "),
            "/usr/sbin/corosync-quorumtool": PVESH_WRAPPER % ("corosync-quorumtool", "corosync-quorumtool ")}


def installed_kernel_script(release: str) -> list[str]:
    """Shell that makes the profile's kernel the node's one installed kernel, as on a real Proxmox VE node.

    The image's Debian kernel (the only one it has) is renamed to the profile's release - /boot/vmlinuz-,
    config-, System.map-, initrd.img-, /lib/modules/ and initramfs-tools' record of it - so discovery,
    the plan, update-initramfs -k all and update-grub all see the release the profile claims
    (6.8.12-4-pve for Proxmox VE 8), and nothing else. The files are the Debian kernel's: real tools
    build a real initramfs and grub.cfg from them. The initramfs is the image's until the first rebuild.
    """
    q = shlex.quote(release)
    return [
        "real=$(ls /lib/modules | head -n1)",
        'if [ "$real" != %s ]; then' % q,
        "  mv /lib/modules/\"$real\" /lib/modules/%s" % q,
        "  for f in vmlinuz config System.map initrd.img; do",
        "    if [ -e \"/boot/$f-$real\" ]; then mv \"/boot/$f-$real\" \"/boot/$f-\"%s; fi" % q,
        "  done",
        "  if [ -e \"/var/lib/initramfs-tools/$real\" ]; then",
        "    mv \"/var/lib/initramfs-tools/$real\" /var/lib/initramfs-tools/%s" % q,
        "  fi",
        # Debian's kernel package points these at the kernel it installed.
        "  for link in vmlinuz initrd.img; do",
        "    if [ -L \"/$link\" ]; then ln -sfn \"boot/$link-\"%s \"/$link\"; fi" % q,
        "  done",
        "fi",
        "if [ \"$(ls /boot | grep -c '^vmlinuz-')\" != 1 ] || [ ! -e /boot/vmlinuz-%s ] \\" % q,
        "    || [ ! -d /lib/modules/%s ]; then" % q,
        "  echo \"installed kernel: /boot holds $(ls /boot | tr '\\n' ' '), not only %s\" >&2; exit 1" % release,
        "fi",
    ]


def setup_script(profile: dict, pve_cluster: bool = False, rebootable: bool = False) -> str:
    """Shell run inside the node once: files, test doubles, module tree, network."""
    lines = ["set -e"]
    files = dict(fakeroot.node_files(profile))
    doubles = []
    if pve_cluster:
        files.update(pve_doubles())
        doubles += ["/usr/bin/pvesh", "/usr/sbin/qm", "/usr/sbin/ha-manager", "/usr/sbin/corosync-quorumtool"]
    if rebootable:
        files.update(reboot_doubles())
        doubles += ["/usr/local/sbin/shutdown", "/usr/local/bin/cat"]
    if profile.get("proxmox_boot_tool_status"):
        files["/etc/vfio-sim/proxmox-boot-tool.status"] = profile["proxmox_boot_tool_status"]
        files["/usr/sbin/proxmox-boot-tool"] = PBT_DOUBLE
        doubles.append("/usr/sbin/proxmox-boot-tool")
    if (profile.get("storage") or {}).get("zpool_status"):
        files["/etc/vfio-sim/zpool.status"] = profile["storage"]["zpool_status"]
        files["/usr/sbin/zpool"] = ZPOOL_DOUBLE
        doubles.append("/usr/sbin/zpool")
    if profile["boot_loader"] == "grub":
        # grub-mkconfig calls /usr/sbin/grub-probe by its full path: divert the real one aside.
        lines.append("dpkg-divert --quiet --local --rename --add /usr/sbin/grub-probe")
        files["/usr/sbin/grub-probe"] = GRUB_PROBE_DOUBLE
        doubles.append("/usr/sbin/grub-probe")
    for path, text in files.items():
        lines.append("mkdir -p %s" % shlex.quote(str(Path(path).parent)))
        lines.append("printf '%%s' %s > %s" % (shlex.quote(text), shlex.quote(path)))
    for path in doubles:
        lines.append("chmod 0755 %s" % path)
    lines += installed_kernel_script(profile["kernel"])
    if profile["boot_loader"] == "grub":
        # A real node has a grub.cfg before anyone touches it. grub.cfg's `lang` follows the
        # caller's LANG: use the one Ansible's modules run with, as the role's update-grub does.
        lines.append("mkdir -p /boot/grub && LANG=C.UTF-8 update-grub >/var/log/vfio-sim-update-grub.log 2>&1")
    if rebootable:
        # A Proxmox kernel knows the profile's native drivers (igc, ...); the image's cloud kernel lacks some. After
        # a simulated boot a device sits on vfio-pci, and its native driver is found by modalias, as on a real node.
        aliases = fakeroot.modules_alias(profile).splitlines()[1:]
        lines.append("printf '%%s\\n' %s >> /lib/modules/%s/modules.alias" % (
            " ".join(shlex.quote(line) for line in aliases), profile["kernel"]))
    return "\n".join(lines) + "\n" + network_script(profile)


def _port(name: str) -> int:
    out = podman("port", name, "22/tcp").stdout.strip().splitlines()[0]
    return int(out.rsplit(":", 1)[1])


def _wait_ssh(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("sshd on 127.0.0.1:%d did not answer within %.0f s" % (port, timeout))


def start_node(name: str, cluster: str, profile: dict, state: Path, key: Path, pve_cluster: bool = False,
               vfio_after_boot: list[str] | None = None) -> dict:
    """vfio_after_boot: the node can be rebooted (simulated): a booted tree with these addresses on vfio-pci."""
    image = images.build(profile["suite"])
    shutil.rmtree(state / name, ignore_errors=True)
    tree = fakeroot.build(profile, state / name / "tree", hostname=name)
    if vfio_after_boot is None:
        kernel = ["-v", "%s:%s/sys:ro" % (tree / "sys", FAKE), "-v", "%s:%s/proc:ro" % (tree / "proc", FAKE)]
        link = ""
    else:
        booted = fakeroot.build(booted_profile(profile, vfio_after_boot), state / name / "booted", hostname=name)
        kernel = ["-v", "%s:%s/0:ro" % (tree, BOOTS), "-v", "%s:%s/1" % (booted, BOOTS)]
        link = "ln -sfn %s/0 %s && " % (BOOTS, FAKE)
    podman("rm", "-f", "-t", "0", name, check=False)
    # sshd logs each session it starts (VERBOSE): the benchmark counts them with `podman logs`.
    podman("run", "-d", "--name", name, "--hostname", name, "--label", "%s=%s" % (LABEL, cluster),
           "--cap-add", "NET_ADMIN", "-p", "127.0.0.1::22", *kernel,
           "-v", "%s:/root/.ssh/authorized_keys:ro" % key.with_suffix(".pub"),
           *(["-v", "%s:%s" % (state / "pve-cluster", PVE_CLUSTER_DIR), "-v", "%s:%s:ro" % (state, PEER_TREES)]
             if pve_cluster else []),
           image, "/bin/sh", "-c",
           link + "ssh-keygen -A && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -o LogLevel=VERBOSE")
    done = podman("exec", name, "/bin/sh", "-c", setup_script(profile, pve_cluster, vfio_after_boot is not None),
                  check=False)
    if done.returncode != 0:
        raise SystemExit("setting up %s (%s) failed:\n%s" % (name, profile["name"], done.stderr))
    port = _port(name)
    _wait_ssh(port)
    return {"ansible_host": "127.0.0.1", "ansible_port": port, "vfio_sim_profile": profile["name"]}


def seed_pve_cluster(state: Path, hosts: list[str]) -> None:
    """The shared cluster state of the pvesh double: the nodes, no mappings, two VMs.

    VM 100 (q35) on the first node already passes a raw host device (the iGPU) through (hostpci0, never
    to be touched); VM 101 (default i440fx machine) is on the second node, or the first.
    """
    directory = state / "pve-cluster"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(json.dumps({
        "nodes": hosts, "mapping_pci": {},
        "vms": {"100": {"node": hosts[0], "config": {"name": "firewall", "machine": "q35",
                                                     "hostpci0": "0000:00:02.0,pcie=1"}},
                "101": {"node": hosts[min(1, len(hosts) - 1)], "config": {"name": "router"}}},
    }, indent=1, sort_keys=True))


def up(cluster: str, profiles: list[str], count: int, pve_cluster: bool = False,
       vfio_after_boot: dict[str, list[str]] | None = None) -> Path:
    """vfio_after_boot: {profile: [address]} - its nodes can be rebooted (simulated, tests/sim/reboot_double.py)
    and boot with those devices on vfio-pci."""
    state = CACHE / "nodes" / cluster
    state.mkdir(parents=True, exist_ok=True)
    key = ssh_key()
    wanted = {}
    for index in range(count):
        name = profiles[index % len(profiles)]
        profile = fakeroot.load(name)
        if not profile.get("suite"):
            raise SystemExit("profile %s is for unit tests only (suite: null)" % name)
        wanted["%s-%02d-%s" % (cluster, index + 1, name)] = profile
    for suite in sorted({profile["suite"] for profile in wanted.values()}):
        images.build(suite)  # once, before the nodes start side by side
    # A node spends most of its start waiting on podman and update-grub: start a few at once.
    if pve_cluster:
        seed_pve_cluster(state, sorted(wanted))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        started = {host: pool.submit(start_node, host, cluster, profile, state, key, pve_cluster,
                                     (vfio_after_boot or {}).get(profile["name"]))
                   for host, profile in wanted.items()}
        hosts = {host: future.result() for host, future in started.items()}
    inventory = {"all": {
        "hosts": hosts,
        "vars": {
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            # The simulated hardware: modules read these fake trees instead of /sys and /proc.
            "passthrough_sysfs_root": "%s/sys" % FAKE,
            "passthrough_procfs_root": "%s/proc" % FAKE,
        },
    }}
    path = state / "inventory.yml"
    path.write_text("# Generated by tests/sim/nodes.py - simulated Proxmox VE nodes\n" +
                    yaml.safe_dump(inventory, sort_keys=False))
    return path


def down(cluster: str) -> list[str]:
    """Remove this cluster's containers (found by label, so only ours)."""
    names = podman("ps", "-a", "--filter", "label=%s=%s" % (LABEL, cluster), "--format", "{{.Names}}").stdout.split()
    if names:
        podman("rm", "-f", "-t", "0", *names)
    shutil.rmtree(CACHE / "nodes" / cluster, ignore_errors=True)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start nodes and print the inventory path")
    start.add_argument("--name", default="vfio-sim", help="cluster name (container name prefix, label)")
    start.add_argument("--profile", action="append", choices=fakeroot.profile_names(),
                       help="hardware profile; repeat to mix, nodes cycle through them")
    start.add_argument("--count", type=int, default=1)
    start.add_argument("--pve-cluster", action="store_true",
                       help="make the nodes one Proxmox VE cluster: pvesh and qm test doubles with shared state")
    start.add_argument("--vfio-after-boot", action="append", default=[], metavar="PROFILE=ADDRESS[,ADDRESS]",
                       help="nodes of PROFILE can be rebooted (simulated) and boot with ADDRESS on vfio-pci")
    stop = sub.add_parser("down", help="remove the cluster's containers")
    stop.add_argument("--name", default="vfio-sim")
    args = parser.parse_args()
    if args.command == "up":
        after = {k: v.split(",") for k, _sep, v in (a.partition("=") for a in args.vfio_after_boot)}
        print(up(args.name, args.profile or ["guide-intel"], args.count, args.pve_cluster, after))
    else:
        print("removed: %s" % " ".join(down(args.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
