"""The vfio_ready module entry point: a device that is not ready fails the task with the reason."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vfio.proxmox.plugins.modules import vfio_ready
from tests.unit.module_args import patch_module_args


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        vfio_ready.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def test_a_device_on_its_native_driver_fails_naming_it(capsys, fake_node):
    node = fake_node("guide-intel")
    code, out = run(capsys, devices=[{"address": "0000:02:00.0", "id": "8086:15F3"}],
                    sysfs_root=node.roots["sysfs_root"], _ansible_check_mode=True)
    assert code == 1 and out["changed"] is False
    assert out["msg"] == "vfio_ready: not ready for a VM - 0000:02:00.0: bound to igc, not vfio-pci"
    assert out["results"][0]["group"] == "12" and out["results"][0]["expected_id"] == "8086:15f3"


def test_no_devices_is_nothing_to_prove(capsys):
    code, out = run(capsys, devices=[])
    assert (code, out["changed"], out["results"]) == (0, False, [])
