"""Review 19b (adversarial): passthrough_extra_cmdline - tokens the role itself writes into the boot loader's
command line - bypass every lockout guard the hand-made configuration goes through. guide-intel: management NIC
0000:00:1f.6 (eno1, e1000e, 8086:1a1c, under vmbr0 with the default route), the card for VMs 0000:02:00.0."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from tests.unit.review19.review19_helpers import facts, inputs

CARD = "0000:02:00.0"


@pytest.mark.parametrize("token", ["module_blacklist=e1000e", "modprobe.blacklist=e1000e"])
def test_an_extra_token_blacklisting_the_management_driver_is_refused(fake_node, token):
    """passthrough_extra_cmdline: [module_blacklist=e1000e] goes into the GRUB drop-in unchecked; with
    passthrough_reboot: if_needed the role reboots the node itself and e1000e never loads - eno1/vmbr0 are gone:
    LOCKOUT. The same line in a hand-made file is refused (issue 19 fix); the role's own token is not."""
    plan = plan_node(facts(fake_node, "guide-intel"),
                     inputs(devices=[{"address": CARD}], extra_cmdline=[token], reboot="if_needed"))
    assert token in plan["cmdline_tokens"] or plan["errors"]
    assert [e for e in plan["errors"] if "e1000e" in e], plan["errors"]


@pytest.mark.parametrize("token", ["vfio-pci.ids=8086:1a1c", "vfio_pci.ids=8086:1a1c", "pci-stub.ids=8086:1a1c"])
def test_an_extra_token_binding_the_management_nic_away_is_refused(fake_node, token):
    """passthrough_extra_cmdline: [vfio-pci.ids=8086:1a1c] (a typo of the card's ID, or a copy from a guide)
    binds the management NIC to vfio-pci (or pci-stub) at the next boot: LOCKOUT after the reboot the role
    performs. Passed through selection, the same NIC would be refused as carrying the management path."""
    plan = plan_node(facts(fake_node, "guide-intel"),
                     inputs(devices=[{"address": CARD}], extra_cmdline=[token], reboot="if_needed"))
    assert [e for e in plan["errors"] if "0000:00:1f.6" in e or "8086:1a1c" in e], plan["errors"]


def test_an_extra_token_switching_the_amd_iommu_off_is_refused_like_intel_iommu(fake_node):
    """intel_iommu=off in passthrough_extra_cmdline is refused ('the role decides'), amd_iommu=off is not: on
    an AMD node the role writes it to /etc/kernel/cmdline, the next boot has no IOMMU groups, and every VM with
    a hostpci device fails to start (verify then fails the host)."""
    plan = plan_node(facts(fake_node, "amd-zfs-uefi"),
                     inputs(devices=[{"address": "0000:06:00.0"}], extra_cmdline=["amd_iommu=off"]))
    assert [e for e in plan["errors"] if "amd_iommu" in e], (plan["errors"], plan["cmdline_tokens"])


def test_an_extra_token_renaming_every_interface_is_refused(fake_node):
    """passthrough_extra_cmdline: [net.ifnames=0] renames eno1 to eth0 at the next boot; /etc/network/interfaces
    still says 'bridge-ports eno1', so vmbr0 comes up without a port and carries the management address on
    nothing: LOCKOUT after the reboot the role performs. Nothing in the plan looks at what a token does to the
    management path."""
    plan = plan_node(facts(fake_node, "guide-intel"),
                     inputs(devices=[{"address": CARD}], extra_cmdline=["net.ifnames=0"], reboot="if_needed"))
    assert [e for e in plan["errors"] if "net.ifnames" in e], (plan["errors"], plan["cmdline_tokens"])
