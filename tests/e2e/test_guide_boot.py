"""Real boot: the guide done by hand, then adopted and given back by the role, in a QEMU guest of its own.

The tests run in order against one guest:
  1  the guide done by hand (bench/baseline/guide.yml, blacklisting e1000e), not booted yet
  2  adopted before that boot: the ports bind live, the role reboots once for the command line,
     ports on vfio-pci, the management NIC up
  3  the rollback gives the guide's files back byte for byte, the ports stay on vfio-pci and the
     guide's own configuration boots and binds both ports
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.role_runs import (
    IFACE_MGMT,
    MGMT,
    OWNED,
    PORT_A,
    PORT_B,
    PORT_ID,
    READY_TASK,
    reboots,
    recap_changed,
    task_result,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(guest_factory):
    return guest_factory("guide")


GUIDE_FILES = "/etc/default/grub /etc/modules /etc/modprobe.d/vfio.conf /etc/modprobe.d/blacklist.conf"
GUIDE = {"guide_ids": PORT_ID, "guide_driver": "e1000e"}


@pytest.fixture(scope="module")
def guide(node):
    """The guide's files as the guide left them (filled by test 1)."""
    return {}


def test_1_the_guide_done_by_hand(node, guide):
    # Not booted here (a reboot costs minutes): test 3 boots the guide's configuration and checks it binds.
    node.playbook(str(REPO / "bench" / "baseline" / "guide.yml"), GUIDE)
    guide["sha256"] = node.sh("sha256sum %s" % GUIDE_FILES)
    assert "options vfio-pci ids=%s" % PORT_ID in node.sh("cat /etc/modprobe.d/vfio.conf")
    assert "iommu=pt" not in node.sh("cat /proc/cmdline").split()


def test_2_adopted_before_its_boot_then_booted_on_the_roles_configuration(node):
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_adopt": True, "passthrough_reboot": "if_needed"})
    # The guide's command line is not in force yet: the role reboots once for it.
    assert reboots(out) == 1
    assert "adopting /etc/modprobe.d/vfio.conf:1 'options vfio-pci ids=8086:10d3'" in out
    assert node.sh("grep -c '^#vfio.proxmox adopted# ' /etc/modprobe.d/vfio.conf").strip() == "1"
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert node.driver(MGMT) == "virtio-pci"
    assert "UP" in json.loads(node.sh("ip -j link show %s" % IFACE_MGMT))[0]["flags"]
    assert {"intel_iommu=on", "iommu=pt"} <= set(node.sh("cat /proc/cmdline").split())
    # The hand-made blacklist is gone from the running kernel's configuration, the role's ids are there.
    config = node.sh("modprobe -c").splitlines()
    assert "blacklist e1000e" not in config and "options vfio_pci ids=8086:10d3" in config
    out = node.playbook("vfio.proxmox.verify", {"passthrough_devices": [{"id": PORT_ID}]})
    assert task_result(out, READY_TASK).startswith("ok:")
    out = node.playbook("vfio.proxmox.passthrough", {"passthrough_adopt": True, "passthrough_reboot": "if_needed"})
    assert (recap_changed(out), reboots(out)) == (0, 0)


def test_3_rollback_gives_the_guide_back_byte_for_byte_and_it_boots_as_before(node, guide):
    out = node.playbook("vfio.proxmox.rollback", {"passthrough_devices": [], "passthrough_reboot": "if_needed"})
    # The guide's configuration binds the ports again: they stay, and its command line needs no reboot.
    assert reboots(out) == 0
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert node.sh("sha256sum %s" % GUIDE_FILES) == guide["sha256"]
    assert node.sh("ls -d %s 2>/dev/null || true" % " ".join(OWNED)).strip() == ""
    node.reboot()
    assert (node.driver(PORT_A), node.driver(PORT_B)) == ("vfio-pci", "vfio-pci")
    assert "blacklist e1000e" in node.sh("modprobe -c").splitlines()
