"""Review 19 (adversarial): odd role input, hand-edited records and files at owned paths, planned by the real
planner (plan_node, the entry of the passthrough_plan action) from pci_facts of the fake sriov-x710 node
(management NIC 0000:00:1f.6 eno1; SR-IOV PF 0000:04:00.0 enp4s0f0np0). Each test failed before its fix with
a traceback, or by acting on garbage, as its docstring says."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import (
    ADOPT_DIR,
    ADOPT_MANIFEST,
    manifest_problem,
    read_manifest,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import SRIOV_SCRIPT, SRIOV_UNIT
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._compose import plan_node, watched_paths
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import (
    BACKUP_SUFFIX,
    GRUB_DROPIN,
    INIT_TOP,
    MODPROBE,
    MODULES_LOAD,
    STATE_RECORD,
    record_problem,
)
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._inputs import checked_inputs
from tests.unit.review19.review19_helpers import cached_facts, inputs, on_node, state_json

PF_INTERFACE = "enp4s0f0np0"
# Any value a YAML or JSON inventory, a survey or -e can hand over.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=6) | st.integers() | st.none(), inner, max_size=3),
    max_leaves=8)
DEVICE_KEYS = st.sampled_from(["address", "interface", "mac", "id", "class", "force", "allow_group", "mapping", "vm"])
VF_KEYS = st.sampled_from(["index", "mac", "vlan", "trust", "spoofchk", "state"])
DEVICE = st.dictionaries(DEVICE_KEYS | st.integers() | st.none(), JSON, max_size=4) | JSON
VF = st.dictionaries(VF_KEYS, JSON | st.integers(0, 4), max_size=4) | JSON
PF = st.fixed_dictionaries(
    {"interface": st.sampled_from([PF_INTERFACE, "eno1"]) | JSON, "vfs": st.integers(0, 8) | JSON},
    optional={"vf": st.lists(VF, max_size=3) | JSON, "vf_driver": st.sampled_from(["none", "host"]) | JSON,
              "vf_macs": JSON, "mac": JSON, "id": JSON}) | DEVICE
OTHERS = st.dictionaries(st.sampled_from(["state", "bind_method", "bind_now", "reboot", "iommu_pt", "extra_cmdline",
                                          "blacklist_drivers", "boot_loader", "adopt"]), JSON, max_size=3)


def plan(fake_node, **given_inputs) -> dict:
    return plan_node(copy.deepcopy(cached_facts(fake_node)), inputs(**given_inputs), {})


def named(found: dict, *words: str) -> list[str]:
    return [e for e in found["errors"] if all(w in e for w in words)]


# --- 1. odd role input: never a traceback, always an error naming the variable ------------------------------
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(devices=JSON | st.lists(DEVICE, max_size=3), sriov=JSON | st.lists(PF, max_size=3), others=OTHERS)
def test_any_json_input_is_planned_or_refused_by_name(fake_node, devices, sriov, others):
    """Before: {1: "x"} or {None: 1} as an item of passthrough_devices or passthrough_sriov raised TypeError
    (sorted() of mixed keys, ", ".join() of a non-string key) out of the action plugin."""
    given_inputs = dict(others, devices=devices, sriov=sriov)
    found = plan_node(copy.deepcopy(cached_facts(fake_node)), inputs(**given_inputs), {})
    assert all(isinstance(e, str) for e in found["errors"])
    _clean, problems = checked_inputs(inputs(**given_inputs))
    assert all(p.startswith("passthrough_") for p in problems), problems
    assert set(problems) <= set(found["errors"])


@pytest.mark.parametrize("key", [1, None, 2.5, True])
def test_a_device_item_with_a_key_that_is_not_a_name_is_refused(fake_node, key):
    """Before: TypeError from sorted()/join over the item's keys."""
    found = plan(fake_node, devices=[{"interface": PF_INTERFACE, key: "x"}])
    assert named(found, "passthrough_devices[0]: key %r is" % (key,), "not a name"), found["errors"]


@pytest.mark.parametrize("key", [1, None])
def test_a_sriov_item_with_a_key_that_is_not_a_name_is_refused(fake_node, key):
    """Before: TypeError from sorted()/join over the item's keys (features/_sriov.py _resolve)."""
    found = plan(fake_node, sriov=[{"interface": PF_INTERFACE, "vfs": 2, key: 1}])
    assert named(found, "passthrough_sriov[0]: key %r is" % (key,), "not a name"), found["errors"]


@pytest.mark.parametrize("item, kind", [("enp2s0", "a string"), (["enp2s0"], "a list"), (None, "a NoneType"),
                                        (7, "a number")])
@pytest.mark.parametrize("variable", ["devices", "sriov"])
def test_an_item_that_is_not_a_mapping_is_refused_by_name(fake_node, variable, item, kind):
    found = plan(fake_node, **{variable: [item]})
    assert named(found, "passthrough_%s[0]: %r is %s, not a mapping" % (variable, item, kind)), found["errors"]
    assert not found["files"] or not any(f["template"] for f in found["files"])


@pytest.mark.parametrize("value, kind", [({"interface": PF_INTERFACE, "vfs": 2}, "a mapping"),
                                         ("enp4s0f0np0", "a string"), (3, "a number")])
def test_passthrough_sriov_that_is_not_a_list_is_refused(fake_node, value, kind):
    found = plan(fake_node, sriov=value)
    assert named(found, "passthrough_sriov: %r is %s, not a list of mappings" % (value, kind)), found["errors"]
    assert found["sriov"]["apply"] == []


@pytest.mark.parametrize("key", ["address", "interface", "mac", "id", "class", "mapping"])
def test_a_device_option_that_is_not_a_string_is_refused(fake_node, key):
    """Before: str(["enp2s0"]) was looked up as an interface "['enp2s0']", a class {} read as "{}"."""
    entry = {"id": "8086:1572", key: [PF_INTERFACE]} if key == "class" else {key: [PF_INTERFACE]}
    found = plan(fake_node, devices=[entry])
    assert named(found, "passthrough_devices[0].%s: ['%s'] is a list, not a string" % (key, PF_INTERFACE)), \
        found["errors"]


def test_a_number_where_a_string_belongs_says_to_quote_it(fake_node):
    """YAML 1.1 reads id: 8086:1528 as the base-60 number 486688."""
    found = plan(fake_node, devices=[{"id": 486688}])
    assert named(found, "passthrough_devices[0].id: 486688 is a number, not a string - quote it in YAML")


@pytest.mark.parametrize("key", ["vf_driver", "vf_macs"])
@pytest.mark.parametrize("value", [[], {}, 0, False])
def test_a_sriov_choice_of_the_wrong_type_is_refused_not_read_as_the_default(fake_node, key, value):
    """Before: `entry.get("vf_driver") or "none"` read [] / {} / 0 / false as vf_driver none and planned it."""
    found = plan(fake_node, sriov=[{"interface": PF_INTERFACE, "vfs": 2, key: value}])
    assert named(found, "passthrough_sriov[0].%s: %r is" % (key, value), "not a string"), found["errors"]
    assert found["sriov"]["pfs"] == []


@pytest.mark.parametrize("vfs", [-1, 2 ** 70, "yes", 2.0, [], {"n": 2}, True])
def test_a_vf_count_that_is_not_a_count_is_refused(fake_node, vfs):
    found = plan(fake_node, sriov=[{"interface": PF_INTERFACE, "vfs": vfs}])
    assert named(found, "passthrough_sriov[0].vfs: %r is not a number of VFs" % (vfs,)), found["errors"]


@pytest.mark.parametrize("item, words", [
    ({"index": {}}, "passthrough_sriov[0].vf[0].index: {} is not a VF index"),
    ({"index": 0, "vlan": 5000}, "passthrough_sriov[0].vf[0].vlan: 5000 is not a VLAN ID"),
    ({"index": 0, "vlan": -3}, "passthrough_sriov[0].vf[0].vlan: -3 is not a VLAN ID"),
    ({"index": 0, "trust": "maybe"}, "passthrough_sriov[0].vf[0].trust: 'maybe' is not a boolean"),
    ({"index": 0, "mac": ["02:00:00:00:00:01"]}, "passthrough_sriov[0].vf[0].mac: ['02:00:00:00:00:01'] is a list"),
    ({"index": 0, "state": 1}, "passthrough_sriov[0].vf[0].state: 1 is a number, not a string"),
    ({"index": 0, "mac": "02:00:00:00:00"}, "passthrough_sriov[0].vf[0].mac: '02:00:00:00:00' is not a unicast MAC"),
    ("index 0", "passthrough_sriov[0].vf[0]: 'index 0' is a string, not a mapping"),
])
def test_a_per_vf_setting_of_the_wrong_type_is_refused(fake_node, item, words):
    found = plan(fake_node, sriov=[{"interface": PF_INTERFACE, "vfs": 2, "vf": [item]}])
    assert named(found, words), found["errors"]


@pytest.mark.parametrize("entry, words", [
    ({"interface": PF_INTERFACE, "force": "maybe"}, "passthrough_devices[0].force: 'maybe' is not a boolean"),
    ({"interface": PF_INTERFACE, "allow_group": [True]}, "passthrough_devices[0].allow_group: [True] is not a boolean"),
    ({"interface": PF_INTERFACE, "mapping": "wan", "vm": {}}, "passthrough_devices[0].vm: {} is not a Proxmox VM ID"),
    ({"mac": "3c:fd:fe:00:04"}, "passthrough_devices[0].mac: '3c:fd:fe:00:04' is not a MAC address"),
    ({"mac": "3c-fd-fe-00-04-00"}, "passthrough_devices[0].mac: '3c-fd-fe-00-04-00' is not a MAC address"),
])
def test_a_device_option_of_the_wrong_form_is_refused(fake_node, entry, words):
    found = plan(fake_node, devices=[entry])
    assert named(found, words), found["errors"]


@pytest.mark.parametrize("key, value, words", [
    ("state", ["absent"], "passthrough_state: ['absent'] is a list, not a string"),
    ("bind_method", {"ids": 1}, "passthrough_bind_method: {'ids': 1} is a mapping, not a string"),
    ("bind_now", "sometimes", "passthrough_bind_now: 'sometimes' is not a boolean"),
    ("iommu_pt", [False], "passthrough_iommu_pt: [False] is not a boolean"),
    ("extra_cmdline", "quiet splash", "passthrough_extra_cmdline: 'quiet splash' is"),
    ("blacklist_drivers", {"e1000e": True}, "passthrough_blacklist_drivers: {'e1000e': True} is"),
])
def test_a_role_variable_of_the_wrong_type_is_refused_by_name(fake_node, key, value, words):
    found = plan(fake_node, devices=[{"interface": PF_INTERFACE}], **{key: value})
    assert named(found, words), found["errors"]


def test_yes_as_a_string_is_a_boolean_as_ansible_reads_it(fake_node):
    """argument_specs types force as bool, and Ansible reads "yes" as true - so does the planner."""
    found = plan(fake_node, devices=[{"address": "0000:04:02.0", "force": "yes", "allow_group": "no"}])
    assert not named(found, "force"), found["errors"]


# --- 2. hand-edited records: refused naming the file and field, before anything is written --------------------
RECORD_FIELDS = ("selectors", "targets", "created_dirs", "backups", "sriov")


def planned_with(fake_node, seen: dict, **given_inputs) -> dict:
    return plan_node(copy.deepcopy(cached_facts(fake_node)), inputs(**given_inputs), seen)


@pytest.mark.parametrize("field, value, words", [
    ("targets", "abc", "targets is 'abc', expected a list"),
    ("targets", [{"id": "8086:1572"}], "targets[0].address is None, expected a PCI address string"),
    ("targets", [1], "targets[0] is 1, expected a mapping with address and id"),
    ("backups", [1], "backups is [1], expected a mapping"),
    ("backups", {"/etc/passwd": "/tmp/x"}, "backups['/etc/passwd'] is '/tmp/x', expected an owned file"),
    ("backups", {MODPROBE: 1}, "backups['%s'] is 1" % MODPROBE),
    ("sriov", {"pfs": 3}, "sriov is {'pfs': 3}, expected a list"),
    ("sriov", "x", "sriov is 'x', expected a list"),
    ("sriov", [{"address": 3, "id": "8086:1572"}], "sriov[0].address is 3"),
    ("sriov", [{"address": "0000:04:00.0", "id": "8086:1572", "vfs": "two"}], "sriov[0].vfs is 'two'"),
    ("created_dirs", "/etc", "created_dirs is '/etc', expected a list"),
    ("created_dirs", ["/etc"], "created_dirs[0] is '/etc', expected one of the directories the role creates"),
    ("selectors", ["interface:eno1"], "selectors is ['interface:eno1'], expected a mapping"),
    ("selectors", {"interface:eno1": "0000:00:1f.6"}, "selectors['interface:eno1'] is '0000:00:1f.6'"),
])
@pytest.mark.parametrize("state", ["present", "absent"])
def test_a_hand_edited_state_json_is_refused_naming_the_field(fake_node, state, field, value, words):
    """Before: "targets": "abc" raised AttributeError (str.get) on removal, "sriov": {"pfs": 3} was read as no
    PFs, "backups": {"/etc/passwd": "/tmp/x"} planned to move /tmp/x over /etc/passwd on rollback."""
    found = planned_with(fake_node, {STATE_RECORD: state_json(**{field: value})}, state=state,
                         devices=[{"address": "0000:04:02.0"}], sriov=[{"interface": PF_INTERFACE, "vfs": 2}])
    assert named(found, "%s: %s" % (STATE_RECORD, words)), found["errors"]
    assert found["restore_backups"] == [] or found["errors"]


def test_a_rollback_never_restores_a_backup_the_record_names_outside_the_role(fake_node):
    """Before: the plan named /tmp/x as the backup of /etc/passwd - owned_files moves it over /etc/passwd."""
    found = planned_with(fake_node, {STATE_RECORD: state_json(backups={"/etc/passwd": "/tmp/x"})}, state="absent")
    assert not [r for r in found["restore_backups"] if r["path"] == "/etc/passwd"]
    assert found["errors"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(RECORD_FIELDS), value=JSON, state=st.sampled_from(["present", "absent"]))
def test_any_json_in_a_record_field_is_planned_or_refused_by_name(fake_node, field, value, state):
    found = planned_with(fake_node, {STATE_RECORD: state_json(**{field: value})}, state=state,
                         devices=[{"address": "0000:04:02.0"}], sriov=[{"interface": PF_INTERFACE, "vfs": 2}])
    assert all(isinstance(e, str) for e in found["errors"])
    if record_problem({field: value}):
        assert named(found, "%s: %s" % (STATE_RECORD, field)), found["errors"]


MANIFEST_FILE = "/etc/modprobe.d/vfio.conf"
SHA = "0" * 40


def manifest(**fields) -> dict:
    entry = {"copy": ADOPT_DIR + MANIFEST_FILE, "original": SHA, "adopted": SHA, "rebuild": "initramfs"}
    data = dict({"files": {MANIFEST_FILE: entry}, "targets": [], "lines": [], "selection": []}, **fields)
    return on_node(ADOPT_MANIFEST, json.dumps(data))


@pytest.mark.parametrize("fields, words", [
    ({"files": {MANIFEST_FILE: 3}}, "files['%s'] is 3, expected a mapping" % MANIFEST_FILE),
    ({"files": {MANIFEST_FILE: {"copy": 7, "original": SHA, "adopted": SHA}}}, "files['%s'].copy is 7" % MANIFEST_FILE),
    ({"files": {MANIFEST_FILE: {"copy": "/etc/shadow", "original": SHA, "adopted": SHA}}},
     "files['%s'].copy is '/etc/shadow', expected" % MANIFEST_FILE),
    ({"files": {"relative": {"copy": ADOPT_DIR + "relative", "original": SHA, "adopted": SHA}}},
     "files['relative'] names 'relative', expected an absolute path below /etc"),
    ({"targets": [1]}, "targets[0] is 1, expected a mapping"),
    ({"targets": "0000:04:02.0"}, "targets is '0000:04:02.0', expected a list"),
    ({"lines": ["x"]}, "lines[0] is 'x', expected a mapping"),
    ({"selection": [{"id": 1, "where": "x"}]}, "selection[0].id is 1"),
])
@pytest.mark.parametrize("state", ["present", "absent"])
def test_a_hand_edited_adoption_manifest_is_refused_naming_the_field(fake_node, state, fields, words):
    """Before: files entries that are not mappings raised AttributeError (int.get) in the planner and in
    pci_facts; a copy outside the adoption directory was moved over the adopted file on rollback."""
    found = planned_with(fake_node, {ADOPT_MANIFEST: manifest(**fields)}, state=state, adopt=True,
                         devices=[{"address": "0000:04:02.0"}])
    assert named(found, "%s: %s" % (ADOPT_MANIFEST, words)), found["errors"]
    assert found["give_back"] == []


@settings(max_examples=120, deadline=None)
@given(field=st.sampled_from(["files", "targets", "lines", "selection"]), value=JSON)
def test_any_json_in_a_manifest_field_is_read_or_refused_by_name(field, value):
    data = {"files": {}, "targets": [], "lines": [], "selection": [], field: value}
    found, problem = read_manifest(json.dumps(data))
    assert problem is None or problem.startswith("%s: %s" % (ADOPT_MANIFEST, field)) or \
        problem == "%s does not hold a files mapping" % ADOPT_MANIFEST, problem
    if problem is None:
        assert manifest_problem(found) is None


# --- 3. a file at an owned path that is not the role's is never lost ------------------------------------------
ADMIN_TEXT = "# my own vfio settings\noptions vfio-pci ids=8086:1572\n"
ROLE_TEXT = "# Ansible managed\n# vfio.proxmox: vfio-pci options\noptions vfio-pci ids=8086:1572\n"
ADMIN_SCRIPT = "#!/bin/sh\n# my own SR-IOV script\necho 4 > /sys/class/net/enp4s0f0np0/device/sriov_numvfs\n"
SECTION = [{"address": "0000:04:00.0", "id": "8086:1572", "vfs": 2, "vf_driver": "none"}]


def foreign(found: dict, path: str) -> list[str]:
    return named(found, path, "does not carry the role's mark")


@pytest.mark.parametrize("path", [MODPROBE, INIT_TOP, MODULES_LOAD, GRUB_DROPIN])
def test_a_rollback_refuses_to_delete_an_administrators_file_at_an_owned_path(fake_node, path):
    """Before: the plan removed it (template None) - the administrator's text was lost with no copy."""
    seen = {STATE_RECORD: state_json(targets=[]), path: on_node(path, ADMIN_TEXT)}
    found = planned_with(fake_node, seen, state="absent")
    assert foreign(found, path), found["errors"]
    assert named(found, path, "removal", "move it away, or, if the role wrote it, put the role's mark back")


def test_a_rollback_refuses_to_delete_an_administrators_sriov_boot_script(fake_node):
    """Before: /usr/local/sbin/vfio-proxmox-sriov holding the administrator's own script was removed on
    rollback; pci_facts did not even read it (watched_paths read only sriov.conf)."""
    seen = {STATE_RECORD: state_json(sriov=SECTION), SRIOV_SCRIPT: on_node(SRIOV_SCRIPT, ADMIN_SCRIPT, "0755")}
    found = planned_with(fake_node, seen, state="absent")
    assert foreign(found, SRIOV_SCRIPT), found["errors"]
    assert SRIOV_SCRIPT in watched_paths()["read"] and SRIOV_UNIT in watched_paths()["read"]


def test_sriov_refuses_to_overwrite_an_administrators_script_at_its_path(fake_node):
    """Before: the SR-IOV feature wrote its boot script over the administrator's, keeping no copy."""
    seen = {SRIOV_SCRIPT: on_node(SRIOV_SCRIPT, ADMIN_SCRIPT, "0755")}
    found = planned_with(fake_node, seen, sriov=[{"interface": PF_INTERFACE, "vfs": 2}])
    assert named(found, SRIOV_SCRIPT, "this run's write"), found["errors"]


def test_present_refuses_to_overwrite_a_file_that_lost_the_mark_after_its_backup_was_recorded(fake_node):
    """The role kept the administrator's first file as MODPROBE.vfio-proxmox-backup; later the administrator
    wrote new text at MODPROBE. Before: the run overwrote it (the backup slot is taken, no second copy)."""
    seen = {STATE_RECORD: state_json(backups={MODPROBE: MODPROBE + BACKUP_SUFFIX}),
            MODPROBE: on_node(MODPROBE, ADMIN_TEXT), MODPROBE + BACKUP_SUFFIX: on_node(MODPROBE, "# first\n")}
    found = planned_with(fake_node, seen, devices=[{"address": "0000:04:02.0"}])
    assert named(found, MODPROBE, "this run's write"), found["errors"]


def test_a_rollback_refuses_to_put_a_backup_over_a_file_that_lost_the_mark(fake_node):
    """The rollback would move the recorded backup over the administrator's newer text."""
    seen = {STATE_RECORD: state_json(backups={MODPROBE: MODPROBE + BACKUP_SUFFIX}),
            MODPROBE: on_node(MODPROBE, ADMIN_TEXT), MODPROBE + BACKUP_SUFFIX: on_node(MODPROBE, "# first\n")}
    found = planned_with(fake_node, seen, state="absent")
    assert foreign(found, MODPROBE), found["errors"]


def test_an_unread_file_at_an_owned_path_is_not_taken_for_the_roles(fake_node):
    """Fail closed: without its text the mark cannot be seen."""
    unread = {k: v for k, v in on_node(INIT_TOP, ADMIN_TEXT).items() if k != "content"}
    found = planned_with(fake_node, {STATE_RECORD: state_json(targets=[]), INIT_TOP: unread}, state="absent")
    assert foreign(found, INIT_TOP), found["errors"]


def test_holds_the_roles_own_files_are_removed_and_a_foreign_one_is_kept_aside_on_the_first_write(fake_node):
    seen = {STATE_RECORD: state_json(targets=[]), MODPROBE: on_node(MODPROBE, ROLE_TEXT)}
    found = planned_with(fake_node, seen, state="absent")
    assert not foreign(found, MODPROBE), found["errors"]
    assert any(f["path"] == MODPROBE and f["template"] is None for f in found["files"])
    found = planned_with(fake_node, {MODPROBE: on_node(MODPROBE, ADMIN_TEXT)}, devices=[{"address": "0000:04:02.0"}])
    assert not foreign(found, MODPROBE), found["errors"]
    assert [f["backup"] for f in found["files"] if f["path"] == MODPROBE] == [MODPROBE + BACKUP_SUFFIX]


def test_the_public_sriov_plan_filter_checks_its_input_as_the_role_does(fake_node):
    """Before: vfio.proxmox.sriov_plan with [{None: 1}] raised TypeError out of the filter."""
    from ansible_collections.vfio.proxmox.plugins.filter.sriov_plan import sriov_plan_filter
    found = sriov_plan_filter(copy.deepcopy(cached_facts(fake_node)), [{"interface": PF_INTERFACE, "vfs": 2, None: 1}])
    assert named(found, "passthrough_sriov[0]: key None is"), found["errors"]


def test_present_refuses_to_overwrite_a_foreign_file_when_its_backup_path_is_taken(fake_node):
    """A leftover MODPROBE.vfio-proxmox-backup the record does not name: the plan asked to keep the
    administrator's file aside, owned_files skips a backup whose path exists, and the write lost the file."""
    seen = {MODPROBE: on_node(MODPROBE, ADMIN_TEXT), MODPROBE + BACKUP_SUFFIX: on_node(MODPROBE, "# older\n")}
    found = planned_with(fake_node, seen, devices=[{"address": "0000:04:02.0"}])
    assert named(found, MODPROBE, "cannot be kept aside", MODPROBE + BACKUP_SUFFIX + " already exists"), \
        found["errors"]


def test_holds_a_copy_an_interrupted_run_already_kept_is_not_a_conflict(fake_node):
    """The backup path holds exactly the file (a run kept it and stopped before writing the record)."""
    seen = {MODPROBE: on_node(MODPROBE, ADMIN_TEXT), MODPROBE + BACKUP_SUFFIX: on_node(MODPROBE, ADMIN_TEXT)}
    found = planned_with(fake_node, seen, devices=[{"address": "0000:04:02.0"}])
    assert not foreign(found, MODPROBE) and not named(found, "cannot be kept aside"), found["errors"]
