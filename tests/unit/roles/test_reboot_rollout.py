"""The role's reboot rollout (tasks/reboot_rollout.yml, reboot_turn.yml) run by ansible-playbook on three hosts
in one batch, in check mode (nothing reboots; the guests and cluster checks run as in a real run) against the
Proxmox test double (tests/sim/pvesh_double.py - not Proxmox): one node's turn at a time, and a node that fails
its turn stops the turns after it. Local connection: the hosts are names for this machine, which is only read."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
- name: Reboot rollout of the passthrough role
  hosts: all
  gather_facts: false
  tasks:
    - name: Every node needs a reboot (what bind.yml decides from the plan)
      ansible.builtin.set_fact:
        __passthrough_reboots: true
        __passthrough_check_mode: "{{ ansible_check_mode }}"
    - name: The rollout
      ansible.builtin.include_role:
        name: vfio.proxmox.passthrough
        tasks_from: reboot_rollout.yml
"""


def collections_path() -> str:
    if REPO.parent.name == "vfio" and REPO.parent.parent.name == "ansible_collections":
        return str(REPO.parents[2])
    return str(REPO / ".ansible" / "collections")


@pytest.fixture
def rollout(tmp_path, proxmox_commands):
    node = socket.gethostname().split(".")[0]
    (tmp_path / "inventory.ini").write_text("".join(
        "%s ansible_connection=local ansible_python_interpreter=%s\n" % (name, sys.executable)
        for name in ("alpha", "beta", "gamma")))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    state = tmp_path / "state.json"

    def run(vms: dict) -> tuple[int, str]:
        state.write_text(json.dumps({"nodes": [node], "mapping_pci": {}, "vms": vms}))
        env = dict(os.environ, PATH="%s:%s" % (tmp_path, os.environ["PATH"]), PVESH_DOUBLE_STATE=str(state),
                   PVESH_DOUBLE_NODE=node, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                   ANSIBLE_CALLBACK_RESULT_FORMAT="json")
        done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--check", "-i",
                               str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml")],
                              check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        return done.returncode, done.stdout + done.stderr
    return run


def task_hosts(output: str, task: str) -> list[list[str]]:
    """For each run of `task`, the hosts it ran on (ok/changed/failed lines under its header)."""
    runs = []
    for block in re.split(r"\n(?=TASK \[)", output):
        if block.startswith("TASK [%s" % task) or ("TASK [" in block.split("\n")[0] and ": %s" % task in
                                                   block.split("\n")[0]):
            runs.append(re.findall(r"^(?:ok|changed|fatal): \[(\w+)\]", block, re.MULTILINE))
    return runs


def test_each_node_takes_its_turn_alone_in_inventory_order(rollout):
    rc, output = rollout({})
    assert rc == 0, output
    runs = task_hosts(output, "Read the node's guests and decide what the reboot does to them")
    assert sorted(h for run in runs for h in run) == ["alpha", "beta", "gamma"], output
    assert all(len(run) == 1 for run in runs), "every turn runs on one node only: %s" % runs
    assert runs == [["alpha"], ["beta"], ["gamma"]], "the turns follow the inventory order: %s" % runs


def test_a_node_that_fails_its_turn_stops_the_turns_after_it(rollout):
    rc, output = rollout({"100": {"node": socket.gethostname().split(".")[0], "status": "running",
                                  "config": {"name": "firewall"}}})
    assert rc == 2, output
    fatal = dict(re.findall(r"^fatal: \[(\w+)\]: FAILED! => (.*)$", output, re.MULTILINE))
    assert sorted(fatal) == ["alpha", "beta", "gamma"], output
    refused = [host for host, line in fatal.items() if "The reboot is refused - VM 100 (firewall) is running" in line]
    assert len(refused) == 1, output
    first = refused[0]
    assert first == "alpha", "the first turn is the first node's"
    for host in set(fatal) - {first}:
        assert re.search(r"The reboot of %s is refused - the rollout stopped because [\w, ]*\b%s\b[\w, ]* did not "
                         r"finish a reboot turn" % (host, first), fatal[host]), fatal[host]
