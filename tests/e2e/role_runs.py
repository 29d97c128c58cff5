"""The real-boot guest's devices (tests/e2e/vm.py lays them out) and what the role's output says about a run."""

from __future__ import annotations

PORT_A, PORT_B, MGMT = "0000:00:04.0", "0000:00:05.0", "0000:00:03.0"
PAIR_0, PAIR_1 = "0000:00:06.0", "0000:00:06.1"
IFACE_A, IFACE_B, IFACE_MGMT = "enp0s4", "enp0s5", "enp0s3"
PORT_ID = "8086:10d3"
OWNED = ["/etc/modprobe.d/vfio-proxmox.conf", "/etc/modules-load.d/vfio-proxmox.conf",
         "/etc/default/grub.d/vfio-proxmox.cfg", "/etc/initramfs-tools/scripts/init-top/vfio-proxmox",
         "/etc/vfio-proxmox"]
BOTH_BY_ID = {"passthrough_devices": [{"id": PORT_ID}], "passthrough_bind_method": "ids"}
READY_TASK = "TASK [vfio.proxmox.passthrough : Open each device through VFIO as a VM would]"


def lspci_blocks(text: str) -> dict[str, dict]:
    blocks = {}
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(":\t", 1) for line in block.splitlines() if ":\t" in line)
        blocks[fields["Slot"]] = fields
    return blocks


def task_result(output: str, task: str) -> str | None:
    """The first result line ("ok: [pve-e2e]", "skipping: ...") after a task's header, or None."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(task):
            results = ("ok", "changed", "skipping", "fatal", "failed")
            return next((n for n in lines[i + 1:] if n.split(":", 1)[0] in results), None)
    return None


def reboots(output: str) -> int:
    """How many times the role's reboot task ran (changed) in a playbook's output."""
    lines = output.splitlines()
    return sum(1 for i, line in enumerate(lines) if line.startswith("TASK [vfio.proxmox.passthrough : Reboot the node]")
               and i + 1 < len(lines) and lines[i + 1].startswith("changed:"))


def recap_changed(output: str) -> int:
    recap = output.split("PLAY RECAP", 1)[1]
    return int(recap.split("changed=", 1)[1].split()[0])
