"""The role's last check (tasks/verify.yml): the node must still answer after anything moved live - a device
bound or released, or SR-IOV VFs made, removed or set (a count change resets the PF's link on many drivers).
Run by ansible-playbook with a local connection; nothing on this machine is changed (verify_checks.yml is
skipped: a reboot is pending)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.roles.test_reboot_rollout import collections_path, task_hosts

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
- name: The verify step of the passthrough role
  hosts: all
  gather_facts: false
  tasks:
    - name: What bind.yml left
      ansible.builtin.set_fact:
        passthrough_reboot_required: true
        __passthrough_check_mode: false
        __passthrough_moved_live: {moved}
        __passthrough_sriov: {sriov}
    - name: Verify
      ansible.builtin.include_role:
        name: vfio.proxmox.passthrough
        tasks_from: verify.yml
"""
PING = "Check that the node still answers"


@pytest.mark.parametrize(("moved", "sriov", "pinged"), [
    ("false", "{changed: true, results: []}", True),
    ("true", "{changed: false, skipped: true}", True),
    ("false", "{changed: false, results: []}", False),
    ("false", "{changed: false, skipped: true}", False),
])
def test_the_node_is_pinged_after_anything_moved_live(tmp_path, moved, sriov, pinged):
    (tmp_path / "inventory.ini").write_text("alpha ansible_connection=local ansible_python_interpreter=%s\n"
                                            % sys.executable)
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(moved=moved, sriov=sriov))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                           str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml")],
                          check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert task_hosts(output, PING) == ([["alpha"]] if pinged else [[]]), output
