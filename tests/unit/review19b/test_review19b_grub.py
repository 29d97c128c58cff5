"""Review 19b (adversarial): GRUB nodes - a hand-made value of a parameter the role sets, later on the line."""

from __future__ import annotations

from tests.unit.review19.test_review19_adopt import Node

GRUB = ('GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off iommu=soft"\n'
        'GRUB_CMDLINE_LINUX=""\n')


def kernel_6_5_booted_with_the_iommu_off(profile):
    profile["kernel"] = "6.5.13-6-pve"
    profile["cmdline"] = ("BOOT_IMAGE=/boot/vmlinuz-6.5.13-6-pve root=/dev/mapper/pve-root ro quiet intel_iommu=off "
                          "iommu=soft")
    profile["iommu"] = False


def test_a_hand_made_intel_iommu_off_that_outvotes_the_dropin_is_refused(fake_node):
    """/etc/default/grub has GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off iommu=soft" (a leftover from a
    debugging session). The role puts intel_iommu=on iommu=pt into GRUB_CMDLINE_LINUX through its drop-in and,
    with passthrough_reboot: if_needed, reboots to 'enable the IOMMU'. grub-mkconfig writes
    GRUB_CMDLINE_LINUX first and GRUB_CMDLINE_LINUX_DEFAULT after it, and the kernel keeps the last
    intel_iommu= and iommu= it parses: the node comes back with the IOMMU still off and iommu=soft - a reboot for
    nothing, verify fails the host, and the plan promised otherwise. The plan should refuse (or adopt) naming
    /etc/default/grub and intel_iommu=off."""
    node = Node(fake_node, {"/etc/default/grub": GRUB}, mutate=kernel_6_5_booted_with_the_iommu_off)
    plan = node.plan(devices=[{"address": "0000:02:00.0"}], reboot="if_needed")
    assert "intel_iommu=on" in plan["cmdline_tokens"] and plan["reboot_for_cmdline"]
    assert [e for e in plan["errors"] if "intel_iommu=off" in e and "/etc/default/grub" in e], (
        plan["errors"], plan["warnings"])
