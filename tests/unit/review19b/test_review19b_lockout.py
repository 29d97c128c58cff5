"""Review 19b (adversarial): what passthrough's guards do not see on the network side."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from tests.unit.review19.review19_helpers import facts, inputs

CARD = "0000:02:00.0"


def card_is_the_port_of_a_vm_bridge(profile):
    """vmbr1: a VM bridge (no host address), its only port is the card's enp2s0 - the guests' uplink."""
    profile["interfaces"].append({"name": "vmbr1", "kind": "bridge", "lowers": ["enp2s0"], "addresses": []})
    next(d for d in profile["devices"] if d["address"] == CARD)["netdevs"][0]["state"] = "up"


def test_the_only_port_of_a_vm_bridge_is_not_taken_live_without_a_word(fake_node):
    """enp2s0 is the uplink of vmbr1, the bridge every guest's net0 is on (no host address there, so it is no
    'management path'). The plan selects the card, passthrough_bind_now is true, and vfio_bind unbinds igc
    live: every running VM on vmbr1 loses its network at once, and /etc/network/interfaces still names enp2s0 as
    vmbr1's port. The SR-IOV planner counts a bridge on a VF as 'in use' (busy_vfs); passthrough says nothing -
    it should refuse (or require force) naming vmbr1."""
    found = facts(fake_node, "guide-intel", mutate=card_is_the_port_of_a_vm_bridge)
    assert next(d for d in found["vfio_pci_devices"] if d["address"] == CARD)["netdevs"][0]["uppers"] == ["vmbr1"]
    plan = plan_node(found, inputs(devices=[{"address": CARD}]))
    assert plan["bind_live"]
    assert [m for m in plan["errors"] + plan["warnings"] if "vmbr1" in m], (plan["errors"], plan["warnings"])


def card_moved_into_a_container(profile):
    """`lxc.net.0.type: phys` / `lxc.net.0.link: enp2s0` in a running container: the interface lives in the
    container's network namespace, so /sys/bus/pci/devices/<card>/net/ is empty on the host while igc drives it."""
    next(d for d in profile["devices"] if d["address"] == CARD)["netdevs"] = []


def test_a_nic_whose_interface_is_in_another_network_namespace_is_not_unbound_blind(fake_node):
    """The card's driver (igc) is bound, yet the host sees no interface: it was moved into a running container
    (or another netns). Nothing about its addresses, routes or uppers can be read from the host, so the lockout
    guard has nothing to say, and vfio_bind unbinds igc live - the container's uplink vanishes mid-run. Fail
    closed: a network function with a bound network driver and no visible interface is 'cannot be known', the
    way unreadable addresses are."""
    found = facts(fake_node, "guide-intel", mutate=card_moved_into_a_container)
    card = next(d for d in found["vfio_pci_devices"] if d["address"] == CARD)
    assert card["driver"] == "igc" and card["netdevs"] == [] and card["is_network"]
    plan = plan_node(found, inputs(devices=[{"address": CARD}]))
    assert plan["bind_live"]
    assert [m for m in plan["errors"] + plan["warnings"] if CARD in m], (plan["errors"], plan["warnings"])
