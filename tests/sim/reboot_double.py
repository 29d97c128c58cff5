"""TEST DOUBLE for `shutdown -r` on a simulated node (a container shares the host's kernel and cannot boot).

Installed as /usr/local/sbin/shutdown on nodes started with a booted tree (tests/sim/nodes.py --booted), where
ansible.builtin.reboot finds it. A "reboot" does what a node's boot would show, at once:
- the running kernel becomes the booted tree: its /proc/cmdline is the first GRUB entry's `linux` arguments
  from the node's real /boot/grub/grub.cfg (written by real grub-mkconfig), and /fake points at that tree,
  whose devices the scenario built as a correct boot binds them (the QEMU suite proves the boot itself);
- the node's guests: Proxmox's pve-guests service stops them at shutdown (`stopall`) and starts the onboot ones
  at boot (`startall`) - pve-manager services/pve-guests.service; here through the pvesh double;
- a new boot id, which /usr/local/bin/cat answers for /proc/sys/kernel/random/boot_id (the reboot action reads
  it to see that the node rebooted);
- a node the cluster state lists in `reboot_stays_offline` does not come back into the cluster (it is added to
  `offline`), so the waits after a reboot can be seen to fail.
Each reboot is appended to the cluster state's `log` as "reboot NODE".
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid

SIM = "/var/lib/vfio-sim"
BOOTED = SIM + "/boots/1"
STATE = SIM + "/pve-cluster/state.json"


def grub_cmdline() -> str:
    with open("/boot/grub/grub.cfg") as handle:
        for line in handle:
            match = re.match(r"^\s*linux\s+(\S+)\s*(.*)$", line)
            if match:
                return ("BOOT_IMAGE=%s %s" % match.groups()).strip()
    raise SystemExit("reboot double: no linux line in /boot/grub/grub.cfg - this node would not boot")


def update_state(change) -> None:
    with open(STATE) as handle:
        state = json.load(handle)
    change(state)
    with open(STATE + ".tmp", "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(STATE + ".tmp", STATE)


def main() -> int:
    node = socket.gethostname().split(".")[0]
    if "-r" not in sys.argv[1:]:
        print("reboot double: only `shutdown -r` is simulated", file=sys.stderr)
        return 1
    subprocess.run(["pvesh", "create", "/nodes/%s/stopall" % node], check=True, stdout=subprocess.DEVNULL)
    with open(BOOTED + "/proc/cmdline", "w") as handle:
        handle.write(grub_cmdline() + "\n")
    os.symlink(BOOTED, "/fake.next")
    os.replace("/fake.next", "/fake")

    def booted(state):
        state.setdefault("log", []).append("reboot %s" % node)
        if node in (state.get("reboot_stays_offline") or []):
            state["offline"] = sorted(set(state.get("offline") or []) | {node})
    update_state(booted)
    subprocess.run(["pvesh", "create", "/nodes/%s/startall" % node], check=True, stdout=subprocess.DEVNULL)
    with open(SIM + "/boot_id.tmp", "w") as handle:
        handle.write(str(uuid.uuid4()) + "\n")
    os.replace(SIM + "/boot_id.tmp", SIM + "/boot_id")
    return 0


if __name__ == "__main__":
    sys.exit(main())
