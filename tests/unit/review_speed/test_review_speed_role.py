"""Review of the change "discovery and the plan are one step" (commits 3118f0d..5749689): the role run by
ansible-playbook against localhost (connection local) with passthrough_sysfs_root/procfs_root pointed at a fake
tree. Every play here only plans (tasks_from plan_only.yml) or runs the main entry point in check mode with
passthrough_state=absent on a node that has none of the role's files (the plan's act is false: nothing after the
plan runs), so nothing on this machine is written. It failed on the change and passed before it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.unit.roles.test_reboot_rollout import collections_path

REPO = Path(__file__).resolve().parents[3]


def play(tmp_path: Path, text: str) -> tuple[int, str]:
    (tmp_path / "inventory.ini").write_text("alpha ansible_connection=local ansible_python_interpreter=%s\n"
                                            % sys.executable)
    (tmp_path / "play.yml").write_text(text)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                           str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml")],
                          check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_what_the_plan_changes_is_still_readable_after_include_role(tmp_path, fake_node):
    """extensions/molecule/passthrough/side_effect.yml and adopt/prepare.yml run the role with include_role and
    then assert on __passthrough_changes. It was a set_fact (host-wide); now it is a role var of vars/main.yml,
    which include_role (public: false) does not expose after the include: 'is undefined'."""
    roots = fake_node("guide-intel").roots
    rc, out = play(tmp_path, """\
- hosts: all
  gather_facts: false
  vars:
    passthrough_sysfs_root: {sys}
    passthrough_procfs_root: {proc}
    passthrough_state: absent
    passthrough_boot_loader: grub
    passthrough_bind_now: false
  tasks:
    - name: Run the role - absent on a node without the role's files, in check mode; the plan acts on nothing
      ansible.builtin.include_role:
        name: vfio.proxmox.passthrough
        apply:
          check_mode: true
    - name: Assert the one look found nothing to write - side_effect.yml's first assert
      ansible.builtin.assert:
        that: not __passthrough_changes.any and not __passthrough_act
""".format(sys=roots["sysfs_root"], proc=roots["procfs_root"]))
    assert "Write, bind, reboot and verify" in out and "included: " not in out.split("Write, bind, reboot")[1][:300]
    assert rc == 0, out
