"""The sriov_vfs module: arguments, check mode, a refusal, a real run - on a fake tree with the kernel/ip double."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.vfio.proxmox.plugins.module_utils.apply import _sriov_vfs
from ansible_collections.vfio.proxmox.plugins.modules import sriov_vfs
from tests.unit.module_args import patch_module_args
from tests.unit.sriov_double import SriovKernel

PF = "0000:04:00.0"


@pytest.fixture
def node(fake_node, monkeypatch):
    node = fake_node("sriov-x710")
    kernel = SriovKernel(node.roots["sysfs_root"])
    monkeypatch.setattr(sriov_vfs.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/sbin/" + name)

    def run_command(self, argv, environ_update=None):
        if argv[0] == "/sbin/modprobe":  # loading vfio-pci makes its driver directory appear
            kernel.modprobed.append(argv[1])
            os.makedirs(kernel.pci("drivers", argv[1]), exist_ok=True)
            return 0, "", ""
        return kernel.ip(argv[1:])
    monkeypatch.setattr(sriov_vfs.AnsibleModule, "run_command", run_command)
    kernel.modprobed = []
    monkeypatch.setattr(_sriov_vfs, "write_file", kernel)
    node.kernel = kernel
    return node


def run(capsys, node, **args):
    args = dict({"sysfs_root": node.roots["sysfs_root"], "procfs_root": node.roots["procfs_root"]}, **args)
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        sriov_vfs.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def test_check_mode_lists_the_steps_and_writes_nothing(capsys, node):
    code, out = run(capsys, node, _ansible_check_mode=True, pfs=[{"address": PF, "id": "8086:1572", "vfs": 4}])
    assert (code, out["changed"]) == (0, True)
    assert out["results"][0]["changes"][-2:] == ["sriov_numvfs 0 (from 2)", "sriov_numvfs 4"]
    assert node.kernel.writes == []


def test_a_run_creates_configures_and_binds_then_changes_nothing(capsys, node):
    pfs = [{"address": PF.upper(), "id": "8086:1572", "vfs": 3, "vf_driver": "vfio-pci",
            "settings": [{"index": 2, "mac": "02:00:04:00:00:02", "vlan": 30, "trust": True}]}]
    code, out = run(capsys, node, pfs=pfs)
    assert (code, out["changed"]) == (0, True), out
    assert [v["driver"] for v in out["results"][0]["vfs"]] == ["vfio-pci"] * 3
    assert node.kernel.modprobed == ["vfio-pci"]
    assert node.kernel.vf_state[PF][2]["vlan"] == 30 and node.kernel.vf_state[PF][2]["trust"] is True
    code, out = run(capsys, node, pfs=pfs)
    assert (code, out["changed"], out["results"][0]["changes"]) == (0, False, [])


def test_a_refused_pf_fails_the_task_with_the_reason(capsys, node):
    code, out = run(capsys, node, pfs=[{"address": PF, "id": "8086:10c9", "vfs": 2}])
    assert code == 1
    assert out["msg"] == ("sriov_vfs: 0000:04:00.0: 0000:04:00.0 is 8086:1572, expected 8086:10c9 - another card is "
                          "in that slot; nothing touched")
    assert node.kernel.writes == []
