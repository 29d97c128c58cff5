"""Review 19b (adversarial): other places a Proxmox node sets sriov_numvfs at boot, next to the role's unit.
The sysfsutils case is refused (issue 19 fix); the two ways most Proxmox SR-IOV guides use are not."""

from __future__ import annotations

import pytest

from tests.unit.review19.test_review19_adopt import Node

PF = "0000:04:00.0"
INTERFACES = ("auto lo\niface lo inet loopback\n\n"
              "iface enp4s0f0np0 inet manual\n"
              "    post-up echo 4 > /sys/class/net/enp4s0f0np0/device/sriov_numvfs\n\n"
              "auto vmbr0\niface vmbr0 inet static\n    address 192.0.2.60/24\n    gateway 192.0.2.1\n"
              "    bridge-ports eno1\n    bridge-stp off\n    bridge-fd 0\n")
UDEV = 'ACTION=="add", SUBSYSTEM=="net", ENV{ID_NET_DRIVER}=="i40e", ATTR{device/sriov_numvfs}="4"\n'


@pytest.mark.parametrize("path,text", [("/etc/network/interfaces", INTERFACES),
                                       ("/etc/udev/rules.d/70-sriov.rules", UDEV)])
def test_a_hand_made_vf_count_at_boot_is_refused_like_sysfsutils(fake_node, path, text):
    """The node already makes 4 VFs at boot by hand (an ifupdown post-up line, or a udev rule - the two forms the
    Proxmox SR-IOV guides give). passthrough_sriov asks for 2: the role's unit writes 2 before the network, then
    the post-up/udev write of 4 over 2 fails with EBUSY (or wins, when it runs first) - the count after a reboot
    depends on ordering, and the VFs VMs are configured with (index 2, 3) may not exist. sysfsutils lines are
    refused for exactly this ('two tools would set it'); these are not even looked at."""
    node = Node(fake_node, {path: text}, profile="sriov-x710")
    plan = node.plan(sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}])
    assert [m for m in plan["errors"] + plan["warnings"] if path in m], (plan["errors"], plan["warnings"])
