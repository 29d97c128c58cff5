"""The init-top script, rendered from the role's template and run by a real sh on fake trees."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import jinja2

TEMPLATE = Path(__file__).resolve().parents[3] / "roles" / "passthrough" / "templates" / "init-top.sh.j2"
IGC = "0000:02:00.0"


def render(tmp_path: Path, binds: list[dict]) -> Path:
    text = jinja2.Template(TEMPLATE.read_text(), keep_trailing_newline=True).render(
        ansible_managed="Ansible managed", passthrough_plan={"address_binds": binds})
    script = tmp_path / "vfio-proxmox"
    script.write_text(text)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def run(tmp_path: Path, node, binds: list[dict]) -> tuple[str, list[str]]:
    script = render(tmp_path, binds)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    modprobe = bindir / "modprobe"  # stand-in: this machine's modules are not touched
    modprobe.write_text("#!/bin/sh\necho \"$@\" >> %s/modprobe.log\n" % tmp_path)
    modprobe.chmod(0o755)
    kmsg = tmp_path / "kmsg"
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]),
               VFIO_PROXMOX_SYSFS=node.roots["sysfs_root"], VFIO_PROXMOX_KMSG=str(kmsg))
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=True)
    assert done.stderr == ""
    return (kmsg.read_text() if kmsg.exists() else ""), (tmp_path / "modprobe.log").read_text().split("\n")


def sysfs_file(node, *parts: str) -> Path:
    return Path(node.roots["sysfs_root"], "bus", "pci", *parts)


def test_prereqs_answers_nothing(tmp_path):
    script = render(tmp_path, [])
    done = subprocess.run(["sh", str(script), "prereqs"], capture_output=True, text=True, check=True)
    assert done.stdout == "\n"


def test_matching_device_on_its_driver_is_handed_over(tmp_path, fake_node):
    node = fake_node("guide-intel")
    log, modprobe = run(tmp_path, node, [{"address": IGC, "id": "8086:15f3"}])
    assert sysfs_file(node, "devices", IGC, "driver_override").read_text() == "vfio-pci\n"
    assert sysfs_file(node, "drivers", "igc", "unbind").read_text() == IGC + "\n"
    assert sysfs_file(node, "drivers_probe").read_text() == IGC + "\n"
    assert log == "vfio-proxmox: 0000:02:00.0 (8086:15f3) handed to vfio-pci (was: igc)\n"
    assert modprobe[0] == "vfio-pci"


def test_changed_device_is_left_alone(tmp_path, fake_node):
    node = fake_node("guide-intel")
    log = run(tmp_path, node, [{"address": IGC, "id": "8086:1521"}])[0]
    assert not sysfs_file(node, "devices", IGC, "driver_override").exists()
    assert not sysfs_file(node, "drivers_probe").exists()
    assert log == "vfio-proxmox: 0000:02:00.0 is 8086:15f3, expected 8086:1521: device changed, not bound\n"


def test_device_already_on_vfio_pci_is_not_touched(tmp_path, fake_node):
    node = fake_node("guide-intel", mutate=lambda p: p["devices"][4].update(driver="vfio-pci"))
    log = run(tmp_path, node, [{"address": IGC, "id": "8086:15f3"}])[0]
    assert not sysfs_file(node, "devices", IGC, "driver_override").exists()
    assert log == "vfio-proxmox: 0000:02:00.0 (8086:15f3) already on vfio-pci\n"


def test_unbound_device_and_missing_device(tmp_path, fake_node):
    node = fake_node("dual-port-igb", mutate=lambda p: p["devices"][3].update(driver=None))
    log = run(tmp_path, node, [{"address": "0000:01:00.1", "id": "8086:1521"},
                               {"address": "0000:07:00.0", "id": "8086:1521"}])[0]
    assert sysfs_file(node, "devices", "0000:01:00.1", "driver_override").read_text() == "vfio-pci\n"
    assert not sysfs_file(node, "drivers", "igb", "unbind").exists()
    assert log.splitlines() == ["vfio-proxmox: 0000:01:00.1 (8086:1521) handed to vfio-pci (was: no driver)",
                                "vfio-proxmox: 0000:07:00.0 not present, skipped"]
    # Only the selected port: its identical sibling keeps igb.
    assert not sysfs_file(node, "devices", "0000:01:00.0", "driver_override").exists()


def test_rendered_script_passes_shellcheck(tmp_path):
    script = render(tmp_path, [{"address": IGC, "id": "8086:15f3"}, {"address": "0000:01:00.1", "id": "8086:1521"}])
    done = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
