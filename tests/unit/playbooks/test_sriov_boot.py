"""The SR-IOV boot script, unit and configuration, rendered from the passthrough role's templates
(the configuration from a real plan) and the script run by a real sh on a fake tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jinja2

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import recorded_pfs, sriov_plan

TEMPLATES = Path(__file__).resolve().parents[3] / "roles" / "passthrough" / "templates"
PF = "0000:04:00.0"


def render(name: str, **values) -> str:
    template = jinja2.Template((TEMPLATES / name).read_text(), keep_trailing_newline=True, trim_blocks=True)
    return template.render(ansible_managed="Ansible managed", **values)


def plan_for(node, entries, record=None, state="present"):
    facts = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    return sriov_plan(facts, entries, set(), state, record)


def test_the_configuration_lists_each_pf_and_each_vf_setting(fake_node):
    plan = plan_for(fake_node("sriov-x710"), [{"address": PF, "vfs": 2, "vf_driver": "vfio-pci",
                                               "vf": [{"index": 1, "vlan": 20, "trust": False}]}])
    conf = render("sriov.conf.j2", passthrough_plan={"sriov": plan})
    assert conf.splitlines()[2:] == [
        "pf 0000:04:00.0 8086:1572 2 vfio-pci",
        "vf 0000:04:00.0 0 mac 02:00:04:00:00:00",
        "vf 0000:04:00.0 1 mac 02:00:04:00:00:01 vlan 20 trust off"]
    assert recorded_pfs(conf) == [{"address": PF, "id": "8086:1572", "vfs": 2}]


def test_a_pf_dropped_from_the_inventory_or_a_rollback_gets_zero_vfs(fake_node):
    record = "pf 0000:04:00.0 8086:1572 2 vfio-pci\n"
    node = fake_node("sriov-x710")
    dropped = plan_for(node, [], record)
    assert dropped["apply"] == [{"address": PF, "id": "8086:1572", "vfs": 0, "vf_driver": "none", "settings": []}]
    assert dropped["reasons"] == ["0000:04:00.0: no longer in passthrough_sriov - its VFs are removed"]
    assert plan_for(node, [{"address": PF, "vfs": 4}], record, state="absent")["apply"][0]["vfs"] == 0
    kept = plan_for(node, [{"address": PF, "vfs": 4}], record)
    assert [p["vfs"] for p in kept["apply"]] == [4]


def test_the_unit_runs_the_script_once_before_the_network():
    unit = render("vfio-proxmox-sriov.service.j2")
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert "Before=network-pre.target networking.service systemd-networkd.service shutdown.target" in unit
    assert "ExecStart=/usr/local/sbin/vfio-proxmox-sriov" in unit
    assert "WantedBy=multi-user.target" in unit


Ran = tuple[subprocess.CompletedProcess, list[str]]


def run_script(tmp_path: Path, node, conf: str, sysfs_root: str | None = None) -> Ran:
    script = tmp_path / "vfio-proxmox-sriov"
    script.write_text(render("vfio-proxmox-sriov.sh.j2"))
    (tmp_path / "sriov.conf").write_text(conf)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ip", "modprobe", "udevadm"):  # stand-ins: this machine's network, modules, udev are not touched
        (bindir / tool).write_text("#!/bin/sh\necho %s \"$@\" >> %s/calls.log\n" % (tool, tmp_path))
        (bindir / tool).chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]),
               VFIO_PROXMOX_SYSFS=sysfs_root or node.roots["sysfs_root"],
               VFIO_PROXMOX_SRIOV_CONF=str(tmp_path / "sriov.conf"), VFIO_PROXMOX_SRIOV_WAIT="2")
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
    calls = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    return done, calls


def sysfs(node, *parts: str) -> Path:
    return Path(node.roots["sysfs_root"], "bus", "pci", "devices", *parts)


def test_the_script_sets_autoprobe_each_vf_and_binds_them_keeping_a_count_that_is_right(tmp_path, fake_node):
    node = fake_node("sriov-x710")
    sysfs(node, PF, "sriov_drivers_autoprobe").write_text("1\n")  # the kernel's default
    done, calls = run_script(tmp_path, node, "pf 0000:04:00.0 8086:1572 2 vfio-pci\n"
                                             "vf 0000:04:00.0 0 mac 02:00:04:00:00:00 vlan 10\n")
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    # The fake tree has 2 VFs and a file, not a kernel: the count is rewritten only when it differs.
    assert sysfs(node, PF, "sriov_numvfs").read_text() == "2\n"
    assert sysfs(node, PF, "sriov_drivers_autoprobe").read_text() == "0\n"
    assert calls == ["ip link set dev enp4s0f0np0 up", "modprobe vfio-pci",
                     "ip link set dev enp4s0f0np0 vf 0 mac 02:00:04:00:00:00 vlan 10"]
    for vf in ("0000:04:02.0", "0000:04:02.1"):
        assert sysfs(node, vf, "driver_override").read_text() == "vfio-pci\n"
    assert Path(node.roots["sysfs_root"], "bus", "pci", "drivers", "iavf", "unbind").read_text() == "0000:04:02.1\n"
    assert done.stdout == "vfio-proxmox-sriov: 0000:04:00.0: 2 VFs (vfio-pci)\n"


def test_a_new_count_is_written_and_logged(tmp_path, fake_node):
    node = fake_node("sriov-x710")
    done, calls = run_script(tmp_path, node, "pf 0000:04:00.0 8086:1572 4 none\n")
    assert done.returncode == 0
    # A file, not a kernel: only the last write stays (the kernel's refusal of 4 over 2, and that 0 goes
    # first, are the real-boot suite's).
    assert sysfs(node, PF, "sriov_numvfs").read_text() == "4\n"
    assert done.stdout == "vfio-proxmox-sriov: 0000:04:00.0: 4 VFs (none)\n"
    assert calls == ["ip link set dev enp4s0f0np0 up"]


def test_another_card_in_the_slot_or_no_pf_is_logged_and_left_alone(tmp_path, fake_node):
    node = fake_node("sriov-x710")
    done, calls = run_script(tmp_path, node, "pf 0000:04:00.0 8086:10c9 2 none\npf 0000:09:00.0 8086:10c9 2 none\n")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "vfio-proxmox-sriov: 0000:04:00.0 is 8086:1572, expected 8086:10c9: not touched",
        "vfio-proxmox-sriov: 0000:09:00.0: no PF with a driver there, skipped"]
    assert sysfs(node, PF, "sriov_numvfs").read_text() == "2\n" and calls == []


def test_at_boot_a_pf_without_its_driver_yet_waits_for_udev_to_settle_first(tmp_path, fake_node):
    """A CI guest's unit ran before udev had loaded igb (its 30 s poll ran out): on the real sysfs, a PF with no
    driver yet waits for udev's queue, then the bounded poll. Only reads /sys: the address is in PCI domain ffff,
    which no machine has (bus ff of domain 0 holds uncore devices on Xeons, some with a driver)."""
    done, calls = run_script(tmp_path, fake_node("sriov-x710"), "pf ffff:ff:1f.7 8086:10c9 2 none\n", sysfs_root="/sys")
    assert calls == ["udevadm settle --timeout=180"]
    assert done.stdout == "vfio-proxmox-sriov: ffff:ff:1f.7: no PF with a driver there, skipped\n"
    assert done.returncode == 1


def test_a_pf_that_has_its_driver_or_a_fake_tree_does_not_wait_for_udev(tmp_path, fake_node):
    node = fake_node("sriov-x710")
    done, calls = run_script(tmp_path, node, "pf 0000:04:00.0 8086:1572 2 none\npf 0000:09:00.0 8086:10c9 2 none\n")
    assert not [call for call in calls if call.startswith("udevadm")]


def test_a_second_run_leaves_vfs_already_on_vfio_pci_alone(tmp_path, fake_node):
    """systemctl restart runs the script again: a VF a VM holds must not be unbound (issue 19)."""
    def on_vfio(profile):
        for device in profile["devices"]:
            if device["address"] in ("0000:04:02.0", "0000:04:02.1"):
                device.update(driver="vfio-pci", netdevs=[])
    node = fake_node("sriov-x710", mutate=on_vfio)
    drivers = Path(node.roots["sysfs_root"], "bus", "pci", "drivers")
    done, calls = run_script(tmp_path, node, "pf 0000:04:00.0 8086:1572 2 vfio-pci\n")
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    assert not (drivers / "vfio-pci" / "unbind").exists()
    assert not Path(node.roots["sysfs_root"], "bus", "pci", "drivers_probe").exists()
    assert done.stdout == "vfio-proxmox-sriov: 0000:04:00.0: 2 VFs (vfio-pci)\n"


def test_the_rendered_boot_script_passes_shellcheck(tmp_path):
    """Found by review 19b: a shellcheck directive inside a case list is a parse error (SC1124); nothing ran
    shellcheck on this script, only on the init-top one."""
    script = tmp_path / "vfio-proxmox-sriov"
    script.write_text(render("vfio-proxmox-sriov.sh.j2"))
    done = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
