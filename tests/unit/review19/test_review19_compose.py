"""Review 19 (adversarial): the composed engine (_compose.plan_node) - passthrough and SR-IOV together, the one
record (state.json), interrupted runs and rollbacks. A test marked "holds" passes; every other test fails for
the defect its docstring names."""

from __future__ import annotations

import json
import os

from ansible_collections.vfio.proxmox.plugins.module_utils.apply._write import apply
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import files_state
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._pci_facts import gather
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import (
    SRIOV_CONF,
    SRIOV_UNIT,
    SRIOV_WANTS,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import watched_paths as composed_paths
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import STATE_RECORD
from tests.unit.review19.review19_helpers import facts, inputs, on_node, state_json

PF = "0000:04:00.0"
VF0, VF1 = "0000:04:02.0", "0000:04:02.1"
INIT_TOP = "/etc/initramfs-tools/scripts/init-top/vfio-proxmox"
SECTION = [{"address": PF, "id": "8086:1572", "vfs": 2, "vf_driver": "none"}]


# --- FAILS ---------------------------------------------------------------------------------------------------


def test_a_state_json_truncated_to_zero_bytes_lets_rollback_forget_the_bound_devices(fake_node, tmp_path):
    """A run bound a device and recorded it; state.json is then emptied (a stray `>` redirect, a restore tool).
    The rollback takes the empty file for 'no record': it releases nothing and removes the file - the device stays
    on vfio-pci, no error, no warning (a record holding one blank line is refused)."""
    seen = {STATE_RECORD: on_node(STATE_RECORD, "")}
    plan = plan_node(facts(fake_node, "guide-intel"), inputs(state="absent"), seen)
    assert [e for e in plan["errors"] + plan["warnings"] if STATE_RECORD in e], (plan["errors"], plan["warnings"])


def _second_port(profile: dict) -> None:
    """A dual-port X710: port 1 (0000:04:00.1, enp4s0f1np1) has SR-IOV and no VFs yet."""
    pf = json.loads(json.dumps(next(d for d in profile["devices"] if d["address"] == PF)))
    pf.update(address="0000:04:00.1", group=23, sriov={"total": 32, "num": 0},
              netdevs=[{"name": "enp4s0f1np1", "mac": "3c:fd:fe:00:04:01", "speed": 10000, "state": "up",
                        "addresses": []}])
    profile["devices"].append(pf)


def test_vfs_for_the_host_on_port_1_are_taken_by_vfio_pci_ids_written_for_port_0s_vfs(fake_node):
    """Port 0's VFs go to VMs (passthrough_devices by id 8086:154c), port 1 gets 2 new VFs for the host (vf_driver:
    host). Only port 0's VFs exist at plan time, so `auto` picks `options vfio-pci ids=8086:154c` + `softdep iavf
    pre: vfio-pci`: from the next boot vfio-pci grabs port 1's host VFs too - the host interfaces (and bridges) on
    them never come up. The two features bind the same ID differently and the composer does not see it."""
    found = facts(fake_node, mutate=_second_port)
    plan = plan_node(found, inputs(devices=[{"id": "8086:154c"}],
                                   sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"},
                                          {"address": "0000:04:00.1", "vfs": 2, "vf_driver": "host"}]))
    bound_by_id = "8086:154c" in plan["ids"]
    assert plan["errors"] or not bound_by_id, (plan["ids"], plan["softdeps"])


# --- HOLDS ---------------------------------------------------------------------------------------------------
def test_holds_a_vf_named_by_interface_that_a_count_change_destroys_is_refused(fake_node):
    """Holds: VF named by interface (enp4s0f0v1) in passthrough_devices, PF named by MAC in passthrough_sriov with a
    new count: refused, naming both."""
    plan = plan_node(facts(fake_node), inputs(devices=[{"interface": "enp4s0f0v1"}],
                                              sriov=[{"mac": "3c:fd:fe:00:04:00", "vfs": 4}]))
    assert [e for e in plan["errors"] if VF1 in e and "destroys the VF" in e]


def test_holds_record_written_but_sriov_files_not_is_completed_by_the_next_run(fake_node):
    """Holds: a run stopped after state.json but before sriov.conf/unit: the next run writes the files and enables
    the unit."""
    seen = {STATE_RECORD: state_json(sriov=SECTION)}
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]), seen)
    assert plan["errors"] == []
    change = changes(plan, seen, ["x\n"] * len([f for f in plan["files"] if f["template"]]))
    assert SRIOV_CONF in change["write"] and change["units"]["enable"] == ["vfio-proxmox-sriov.service"]


def test_holds_sriov_files_written_but_record_not_still_release_the_pf_on_rollback(fake_node):
    """Holds: sriov.conf and the unit on the node, state.json never written: rollback still sets the PF to 0 VFs,
    removes the files and disables the unit."""
    seen = {SRIOV_CONF: on_node(SRIOV_CONF, "pf 0000:04:00.0 8086:1572 2 none\n"),
            SRIOV_UNIT: on_node(SRIOV_UNIT, "# vfio.proxmox: unit\n[Unit]\n"),
            SRIOV_WANTS: {"exists": True, "type": "link"}}
    plan = plan_node(facts(fake_node), inputs(state="absent"), seen)
    assert [pf["vfs"] for pf in plan["sriov"]["apply"]] == [0]
    change = changes(plan, seen, [])
    # sriov.conf names the PF to release: it goes after the release (after_release), the unit before its file.
    assert SRIOV_CONF in change["after_release"]["remove"] and change["units"]["disable"] == [
        "vfio-proxmox-sriov.service"]


def test_holds_an_sriov_conf_that_is_a_symlink_is_refused(fake_node):
    """Holds: /etc/vfio-proxmox/sriov.conf replaced by a symlink (to a file elsewhere) is refused, not written
    through."""
    seen = {SRIOV_CONF: {"exists": True, "type": "link"}}
    plan = plan_node(facts(fake_node), inputs(sriov=[{"address": PF, "vfs": 2}]), seen)
    assert [e for e in plan["errors"] if e.startswith(SRIOV_CONF + " is a link")]


def test_holds_passthrough_and_sriov_written_together_roll_back_to_an_empty_etc(fake_node, tmp_path):
    """Holds: a real run of both features into a fake /etc, then the rollback, leaves no owned file behind."""
    node = fake_node("sriov-x710")
    etc = node.roots["etc_root"]

    def real(path):
        return os.path.join(etc, path.lstrip("/"))

    def seen_now():
        watch = composed_paths()
        states = files_state([real(p) for p in watch["paths"] + watch["read"]], [real(p) for p in watch["read"]])
        return {p: dict(s, path=p) for p, s in zip(watch["paths"] + watch["read"], states.values())}

    found = gather(run=node.run, which=node.which, **node.roots)["ansible_facts"]
    before = {os.path.relpath(os.path.join(d, f), etc) for d, _dirs, fs in os.walk(etc) for f in fs}
    for state in ("present", "absent"):
        seen = seen_now()
        plan = plan_node(found, inputs(state=state, devices=[{"address": VF1}] if state == "present" else [],
                                       sriov=[{"address": PF, "vfs": 2, "vf_driver": "vfio-pci"}]), seen)
        assert plan["errors"] == []
        rendered = []
        for row in plan["files"]:
            if row["template"] == "state.json.j2":
                rendered.append(json.dumps(plan["state_record"]))
            elif row["template"]:
                rendered.append("# vfio.proxmox: %s\n" % row["path"])
        change = changes(plan, seen, rendered)
        apply([real(d) for d in change["dirs"]], [dict(f, path=real(f["path"])) for f in change["files"]],
              [real(p) for p in change["backup"]], [real(p) for p in change["remove"]],
              [{"path": real(r["path"]), "backup": real(r["backup"])} for r in change["restore"]], [], False)
        apply([], [], [], [real(p) for p in change["finish"]["remove"]], [],
              [real(d) for d in change["finish"]["remove_empty_dirs"]], False)
        # After the live release (act.yml): the records that named what to release.
        apply([], [], [], [real(p) for p in change["after_release"]["remove"]], [],
              [real(d) for d in change["after_release"]["remove_empty_dirs"]], False)
    after = {os.path.relpath(os.path.join(d, f), etc) for d, _dirs, fs in os.walk(etc) for f in fs}
    assert after == before


def _adopt_harness():
    """test_adopt.py's Node, which writes with owned_files' own code (loaded under another name)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "plugins" / "module_utils" / "test_adopt.py"
    spec = importlib.util.spec_from_file_location("review19_adopt_harness_compose", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_holds_foreign_modprobe_and_grub_drop_in_files_are_kept_aside_and_given_back(fake_node):
    """Holds: an admin's own files at /etc/modprobe.d/vfio-proxmox.conf (CRLF) and the GRUB drop-in path are kept
    aside on the first run and put back byte for byte by the rollback."""
    hand = {"/etc/modprobe.d/vfio-proxmox.conf": "# mine\noptions kvm ignore_msrs=1\r\n",
            "/etc/default/grub.d/vfio-proxmox.cfg": "GRUB_TIMEOUT=1"}
    node = _adopt_harness().Node(fake_node, "guide-intel", hand)
    before = {p: node.read(p) for p in hand}
    node.run(devices=[{"interface": "enp2s0"}])
    plan, _change = node.run(state="absent")
    assert plan["errors"] == []
    assert {p: node.read(p) for p in hand} == before
