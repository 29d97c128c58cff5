"""VM configurations and PCI mappings that name a VF: a count that removes it leaves a VM that cannot start
(discovery/_vm_configs.py read by pci_facts, refused by the SR-IOV planner)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._vm_configs import (
    mapping_paths,
    overlaps,
    pci_ids,
    vm_references,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import sriov_plan

PF, KEPT, GONE = "0000:04:00.0", "0000:04:02.0", "0000:04:02.1"
NODE = "sriov-x710"  # the fake node's host name (its profile's name)


def facts(fake_node, files: dict | None = None):
    node = fake_node("sriov-x710", mutate=lambda p: p["files"].update(files or {}))
    return gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]


def one_vf_less(fake_node, files: dict) -> list[str]:
    return sriov_plan(facts(fake_node, files), [{"address": PF, "vfs": 1}])["errors"]


# --- the reader -----------------------------------------------------------------------------------
def test_every_way_a_vm_names_a_device_is_read():
    text = ("boot: order=scsi0\nhostpci0: 04:02.1,pcie=1\nhostpci1: host=0000:04:02.0;0000:05:00.0,x-vga=1\n"
            "hostpci2: mapping=vf-pool,pcie=1\n#hostpci3: 0000:09:00.0\n[PENDING]\nhostpci4: 0000:06:00\n"
            "[before-upgrade]\nhostpci5: 0000:07:00.0\n")
    assert vm_references(text) == [
        {"option": "hostpci0", "value": "04:02.1,pcie=1", "pending": False, "ids": ["0000:04:02.1"], "mapping": None},
        {"option": "hostpci1", "value": "host=0000:04:02.0;0000:05:00.0,x-vga=1", "pending": False,
         "ids": ["0000:04:02.0", "0000:05:00.0"], "mapping": None},
        {"option": "hostpci2", "value": "mapping=vf-pool,pcie=1", "pending": False, "ids": [], "mapping": "vf-pool"},
        {"option": "hostpci4", "value": "0000:06:00", "pending": True, "ids": ["0000:06:00"], "mapping": None}]


def test_an_id_without_its_function_names_every_function_of_the_device():
    assert overlaps("0000:04:02", "0000:04:02.7") and overlaps("0000:04:02.1", "0000:04:02.1")
    assert not overlaps("0000:04:02.1", "0000:04:02.0") and not overlaps("0000:04:02", "0000:04:03.0")


def test_mapping_entries_of_this_node_only():
    text = ("# written by hand\nvf-pool\n\tdescription two VFs\n\tmap node=pve1,path=0000:04:02.1,id=8086:154c\n"
            "\tmap id=8086:154c,node=pve2,path=0000:04:02.0\n\nwhole-card\n"
            "\tmap node=pve1,path=0000:05:00.0;0000:05:00.1,id=8086:1572\n")
    assert mapping_paths(text, "pve1") == {"vf-pool": ["0000:04:02.1"], "whole-card": ["0000:05:00.0", "0000:05:00.1"]}
    assert mapping_paths(text, "pve2") == {"vf-pool": ["0000:04:02.0"], "whole-card": []}


pci_id = st.tuples(st.sampled_from(["", "0000:", "0001:", "10000:"]), st.integers(0, 255), st.integers(0, 31),
                   st.sampled_from([None, *range(8)]), st.booleans())


def _written(part) -> str:
    domain, bus, device, function, upper = part
    text = "%s%02x:%02x%s" % (domain, bus, device, "" if function is None else ".%x" % function)
    return text.upper() if upper else text


def _meant(part) -> str:
    domain, bus, device, function = part[:4]
    return "%s:%02x:%02x%s" % (domain.rstrip(":") or "0000", bus, device, "" if function is None else ".%x" % function)


@given(st.lists(pci_id, min_size=1, max_size=4), st.booleans(), st.lists(st.sampled_from(
    ["pcie=1", "rombar=0", "x-vga=on", "romfile=vbios.bin", "mdev=nvidia-63"]), max_size=3),
    st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_a_hostpci_in_any_form_names_what_qemu_server_would_pass_through(parts, keyed, options, newline, pending):
    value = ("host=" if keyed else "") + ";".join(_written(p) for p in parts)
    text = newline.join(["name: vm", "[PENDING]" if pending else "#", "hostpci7: " + ",".join([value, *options]),
                         "[snap]", "hostpci8: 0000:ff:1f.7", ""])
    (found,) = vm_references(text)
    assert (found["option"], found["pending"], found["mapping"]) == ("hostpci7", pending, None)
    assert found["ids"] == [_meant(p) for p in parts]


@given(st.text(max_size=300), st.text(max_size=20))
def test_arbitrary_text_never_breaks_the_readers(text, node):
    for reference in vm_references(text):
        assert reference["option"].startswith("hostpci")
    assert all(isinstance(paths, list) for paths in mapping_paths(text, node).values())
    assert isinstance(pci_ids(text), list)


# --- the node's files, through pci_facts ----------------------------------------------------------
def test_a_host_without_etc_pve_is_no_proxmox_node(fake_node):
    host = facts(fake_node)["vfio_host"]
    assert (host["vm_pci"], host["vm_pci_error"]) == ({"vms": {}, "mappings": {}, "cts": {}}, None)


def test_pmxcfs_not_mounted_is_unknown_not_no_vms(fake_node):
    host = facts(fake_node, {"/etc/pve/.placeholder": ""})["vfio_host"]
    assert host["vm_pci"] is None
    assert host["vm_pci_error"] == ("/etc/pve/qemu-server cannot be read (No such file or directory) - is pmxcfs "
                                    "(pve-cluster.service) running?")


# --- the SR-IOV planner ---------------------------------------------------------------------------
@pytest.mark.parametrize("hostpci", ["0000:04:02.1,pcie=1", "04:02.1", "host=04:02", "host=0000:05:00.0;04:02.1"])
def test_a_count_that_removes_the_vf_a_stopped_vm_names_is_refused(fake_node, hostpci):
    errors = one_vf_less(fake_node, {"/etc/pve/qemu-server/101.conf": "name: fw\nhostpci0: %s\n" % hostpci})
    assert errors == ["passthrough_sriov[0]: a count of 1 for 0000:04:00.0 removes VFs that VM 101 names %s in "
                      "hostpci0 (%s) - that VM could not start again; change its hostpci (or the mapping) first" % (
                          GONE, hostpci)]


def test_a_vf_the_count_keeps_or_a_snapshot_names_is_no_reason_to_refuse(fake_node):
    assert one_vf_less(fake_node, {"/etc/pve/qemu-server/101.conf": "hostpci0: %s\n[old]\nhostpci1: %s\n" % (
        KEPT, GONE)}) == []


def test_a_mapping_of_this_node_that_maps_the_vf_is_refused_with_the_vms_using_it(fake_node):
    files = {"/etc/pve/qemu-server/102.conf": "hostpci0: mapping=vf-pool\n",
             "/etc/pve/mapping/pci.cfg": "vf-pool\n\tmap node=%s,path=%s,id=8086:154c\n"
                                         "\tmap node=pve9,path=%s,id=8086:154c\n" % (NODE, GONE, KEPT)}
    (error,) = one_vf_less(fake_node, files)
    assert "VM 102 names %s in hostpci0 (mapping=vf-pool); PCI mapping vf-pool maps %s on this node" % (
        GONE, GONE) in error
    other_node = dict(files, **{"/etc/pve/mapping/pci.cfg": "vf-pool\n\tmap node=pve9,path=%s,id=8086:154c\n" % GONE})
    assert one_vf_less(fake_node, other_node) == []


def test_vms_that_cannot_be_read_refuse_the_count_not_guess(fake_node):
    (error,) = one_vf_less(fake_node, {"/etc/pve/.placeholder": ""})
    assert ("whether a VM or a PCI mapping names one of them (%s) cannot be known: /etc/pve/qemu-server cannot be "
            "read" % GONE) in error
    assert sriov_plan(facts(fake_node, {"/etc/pve/.placeholder": ""}), [{"address": PF, "vfs": 4}])["errors"] == []


def test_the_rollback_that_removes_every_vf_a_vm_names_is_refused(fake_node):
    found = facts(fake_node, {"/etc/pve/qemu-server/101.conf": "hostpci0: %s\n" % KEPT})
    plan = sriov_plan(found, [], state="absent", recorded=[{"address": PF, "id": "8086:1572", "vfs": 2}])
    assert plan["errors"] == [
        "passthrough_state: absent: the rollback removes every VF of %s, and VM 101 names %s in hostpci0 (%s) - that "
        "VM could not start again; change its hostpci (or the mapping) first; nothing was changed" % (PF, KEPT, KEPT)]


def test_a_container_that_takes_the_vfs_interface_is_refused_too(fake_node):
    """`lxc.net.0.type: phys` with `lxc.net.0.link: enp4s0f0v1` moves VF 1's interface into container 200 when it
    starts (pve-container src/PVE/LXC/Config.pm parse_pct_config keeps raw lxc keys): without the VF it no longer
    starts. A veth of Proxmox's own (net0) or a snapshot section is no reason."""
    conf = "arch: amd64\nlxc.net.0.type: phys\nlxc.net.0.link: enp4s0f0v1\nlxc.net.0.flags = up\n"
    (error,) = one_vf_less(fake_node, {"/etc/pve/qemu-server/.keep": "", "/etc/pve/lxc/200.conf": conf})
    assert "container 200 takes enp4s0f0v1 (%s) (lxc.net phys)" % GONE in error
    for harmless in ("net0: name=eth0,bridge=vmbr0\n", "lxc.net.0.type: veth\nlxc.net.0.link: enp4s0f0v1\n",
                     "arch: amd64\n[snap]\nlxc.net.0.type: phys\nlxc.net.0.link: enp4s0f0v1\n",
                     "lxc.net.0.type: phys\nlxc.net.0.link: enp4s0f0v0\n"):
        assert one_vf_less(fake_node, {"/etc/pve/qemu-server/.keep": "", "/etc/pve/lxc/200.conf": harmless}) == []
