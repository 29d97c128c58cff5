# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One plan from every node feature: the passthrough plan (features/_passthrough.py) and the SR-IOV
fragment (features/_sriov.fragment), merged, with the conflicts between them refused before anything is written.

Conflicts: a path two features claim; a device both passed through and split into VFs (the
SR-IOV planner refuses a selected PF); a VF passed through while SR-IOV destroys it (a count
change, or its PF dropped) or binds it differently (vf_driver host); management paths are each
feature's own guard. The role tests only the booleans set here: `act` (something to do),
`verify` (passthrough's checks apply), `sriov.live`, `sriov.unit.enable|disable`.
"""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import OWN_MARK, STATE_DIR, STATE_RECORD
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._sysfs_conf import sets_count_of
from ansible_collections.vfio.proxmox.plugins.module_utils.features._passthrough import make_plan
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import SRIOV_FILES, fragment
from ansible_collections.vfio.proxmox.plugins.module_utils.features._sriov import watched_paths as sriov_paths
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import OWNED_FILES, read_record
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import watched_paths as passthrough_paths
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._inputs import checked_inputs


def conflicts(plan: dict, sriov: dict, facts: dict) -> list[str]:
    errors = []
    claimed: dict[str, str] = {f["path"]: "passthrough" for f in plan["files"]}
    for row in sriov["files"]:
        if row["path"] in claimed:
            errors.append("%s is claimed by both %s and SR-IOV - one owner per file" % (
                row["path"], claimed[row["path"]]))
    devices = {d["address"]: d for d in facts.get("vfio_pci_devices") or []}
    changing = {pf["address"]: pf for pf in sriov.get("pfs") or []}
    # What each PF is to have: the planned ones (also those already in place, which sriov_vfs skips) and the
    # released ones (0 VFs).
    by_pf = dict(changing)
    for pf in sriov["apply"]:
        by_pf.setdefault(pf["address"], pf)
    for device in plan["devices"]:
        physfn = ((devices.get(device["address"]) or {}).get("sriov") or {}).get("physfn")
        if not physfn or physfn not in by_pf:
            continue
        wanted = by_pf[physfn]
        where = changing.get(physfn, {}).get("selected_by") or "the SR-IOV boot configuration"
        current = ((devices.get(physfn) or {}).get("sriov") or {}).get("num_vfs")
        if wanted["vfs"] != current:
            errors.append("%s selects %s, a VF of %s, and %s changes that PF's VF count from %s to %d - which "
                          "destroys the VF: pass it through once its PF's count is settled" % (
                              device["selected_by"], device["address"], physfn, where, current, wanted["vfs"]))
        elif wanted["vf_driver"] == "host":
            errors.append("%s selects %s, a VF of %s, for vfio-pci, and %s gives that PF's VFs to the host's VF "
                          "driver (vf_driver: host) - the two bind it differently: set vf_driver to none or "
                          "vfio-pci" % (device["selected_by"], device["address"], physfn, where))
    for device in plan["devices"]:
        group = (devices.get(device["address"]) or {}).get("iommu_group")
        for pf in changing.values():
            if pf["address"] != device["address"] and pf.get("vfs") and group is not None and \
                    (devices.get(pf["address"]) or {}).get("iommu_group") == group:
                errors.append("%s selects %s, whose IOMMU group %s also holds %s, which %s keeps on its host driver "
                              "to carry VFs - the group is never viable, so no VM could start with it" % (
                                  device["selected_by"], device["address"], group, pf["address"], pf["selected_by"]))
    for target in plan.get("bind_targets") or []:
        physfn = ((devices.get(target["address"]) or {}).get("sriov") or {}).get("physfn")
        wanted = by_pf.get(physfn) or {}
        if target["state"] == "absent" and wanted.get("vfs") and wanted.get("vf_driver") == "vfio-pci":
            errors.append("%s, a VF of %s, is no longer in passthrough_devices, so it would go back to its host "
                          "driver now, while %s keeps that PF's VFs on vfio-pci (vf_driver: vfio-pci) - every run "
                          "and boot would move it back: keep it in passthrough_devices, or set vf_driver: host" % (
                              target["address"], physfn, changing.get(physfn, {}).get("selected_by")
                              or "the SR-IOV boot configuration"))
    return errors + _ids_take_host_vfs(plan, sriov, devices, (facts.get("vfio_host") or {}).get("handmade") or [])


def unmade_vfs(plan: dict, sriov: dict, facts: dict) -> list[str]:
    """A VF passed through that nothing makes again at boot (VFs are made at runtime): after the reboot it is
    gone and the VM given it does not start. Made again by passthrough_sriov or by the node's own sysfsutils,
    ifupdown or udev lines."""
    devices = {d["address"]: d for d in facts.get("vfio_pci_devices") or []}
    host = facts.get("vfio_host") or {}
    made = {pf["address"] for pf in sriov.get("pfs") or [] if pf.get("vfs")}
    lines = [(address, set(line["interfaces"])) for line in host.get("boot_numvfs") or []
             for address in line["addresses"] or [None]]
    warnings = []
    for device in plan["devices"]:
        physfn = ((devices.get(device["address"]) or {}).get("sriov") or {}).get("physfn")
        if not physfn or physfn in made:
            continue
        names = {n["name"] for n in (devices.get(physfn) or {}).get("netdevs") or []}
        if any(address == physfn or (address is None and (not interfaces - {None} or names & interfaces))
               for address, interfaces in lines) or any(
                sets_count_of(line, physfn, names) for line in host.get("sysfs_conf_numvfs") or []):
            continue
        warnings.append("%s selects %s, a VF of %s, and nothing makes that PF's VFs again at boot (not in "
                        "passthrough_sriov, no sysfsutils, ifupdown or udev line) - after a reboot the VF is gone: "
                        "add %s to passthrough_sriov" % (device["selected_by"], device["address"], physfn, physfn))
    return warnings


def _ids_take_host_vfs(plan: dict, sriov: dict, devices: dict, handmade: list[dict]) -> list[str]:
    """`options vfio-pci ids=` binds every device with that ID at boot - also the VFs another PF of the same
    model makes for the host, which do not exist yet when the plan looks. A hand-made binding does the same."""
    ids = set(plan.get("ids") or [])
    # Hand-made bindings by ID (any form discovery reads), by vendor:device: vfio-pci takes new VFs with it.
    by_hand = {}
    for line in handmade:
        for spec in line.get("ids") or []:
            by_hand.setdefault(":".join(spec.lower().split(":")[:2]), "%s:%d" % (line["file"], line["line"]))
    vf_ids: dict[str, set[str]] = {}  # PF vendor:device -> the vendor:device of its VFs seen
    for device in devices.values():
        physfn = devices.get((device.get("sriov") or {}).get("physfn") or "")
        if physfn:
            vf_ids.setdefault(_pci_id(physfn), set()).add(_pci_id(device))
    errors = []
    for pf in sriov.get("pfs") or []:
        # The PF's own sriov_vf_device tells its VFs' ID before they exist (another model may make the same ID).
        vf_device = ((devices.get(pf["address"]) or {}).get("sriov") or {}).get("vf_device")
        own = {"%s:%s" % (pf["id"].split(":")[0], vf_device)} if vf_device else set()
        host_vf_ids = (vf_ids.get(pf["id"], set()) | own) if pf["vfs"] and pf["vf_driver"] == "host" else set()
        taken = sorted(host_vf_ids & ids)
        if taken:
            errors.append("%s gives the VFs of %s to the host (vf_driver: host), but the plan binds %s by ID "
                          "(options vfio-pci ids=) - from the next boot vfio-pci would take those VFs too: set "
                          "passthrough_bind_method: address" % (pf["selected_by"], pf["address"], ", ".join(taken)))
        for vf_id in sorted(host_vf_ids & set(by_hand)):
            errors.append("%s gives the VFs of %s to the host (vf_driver: host), but %s binds %s to vfio-pci by ID - "
                          "vfio-pci would take every new VF of that ID before the host's VF driver: remove that "
                          "line" % (pf["selected_by"], pf["address"], by_hand[vf_id], vf_id))
    return errors


def _pci_id(device: dict) -> str:
    return "%s:%s" % (device.get("vendor"), device.get("device"))


def compose(plan: dict, facts: dict, inputs: dict, seen: dict) -> dict:
    """The passthrough plan with the SR-IOV fragment merged in (plan is changed and returned)."""
    selected = {d["address"] for d in plan["devices"]}
    record, problem = read_record(seen)
    sriov = fragment(facts, inputs.get("sriov"), selected, plan["state"], seen, record.get("sriov"))
    if problem and sriov["involved"] and problem not in plan["errors"]:
        # Fail closed: SR-IOV would rewrite the record, and the PFs it names cannot be known.
        plan["errors"].append(problem + " - SR-IOV cannot tell which PFs it gave VFs; move it away or fix it")
    plan["verify"] = bool(plan["act"]) and plan["state"] == "present"
    plan["sriov"] = sriov
    plan["errors"] += sriov.pop("errors") + conflicts(plan, sriov, facts)
    plan["warnings"] += sriov.pop("warnings") + unmade_vfs(plan, sriov, facts)
    plan["reasons"] += sriov.pop("reasons")
    if sriov["involved"]:
        plan["act"] = True
        plan["files"] = plan["files"] + sriov["files"]
        plan["dirs"] = plan["dirs"] + [d for d in sriov["dirs"] if d not in plan["dirs"]]
        # The feature's files (sriov.conf) live in the state directory: keep it while they are wanted.
        plan["keeps_state_dir"] = bool(sriov["dirs"])
    _record(plan, sriov, record, seen)
    plan["errors"] += foreign_files(plan["files"], seen)
    return plan


def foreign_files(rows: list[dict], seen: dict) -> list[str]:
    """Refusals for files at owned paths that are not the role's (no OWN_MARK): the role removes a row without a
    template and overwrites one with a template - either loses the administrator's text unless a copy is kept
    (row backup, taken before the write). The role's own directory holds only its records, read and checked
    as such. An unread text is not known to be the role's (fail closed)."""
    errors = []
    for row in rows:
        state = seen.get(row["path"]) or {}
        if row["path"].startswith(STATE_DIR + "/") or not state.get("exists") or state.get("type") != "file":
            continue
        if OWN_MARK in (state.get("content") or ""):
            continue
        if row["template"] and row.get("backup"):
            # owned_files keeps the file aside only where no copy is yet: a copy of other bytes there (not this
            # file kept by an interrupted run) means the write loses the file.
            kept = seen.get(row["backup"]) or {}
            if kept.get("exists") and (kept.get("checksum") is None or kept.get("checksum") != state.get("checksum")):
                errors.append("%s does not carry the role's mark (%r) and cannot be kept aside: %s already exists "
                              "(an earlier copy) - this run's write would lose it: move one of them away" % (
                                  row["path"], OWN_MARK, row["backup"]))
            continue
        errors.append("%s does not carry the role's mark (%r) - it is not the role's file, and %s would lose it "
                      "with no copy kept: move it away, or, if the role wrote it, put the role's mark back (a "
                      "comment line with %r)" % (row["path"], OWN_MARK, "this run's write" if row["template"]
                                                 else "this run's removal", OWN_MARK))
    return errors


def _record(plan: dict, sriov: dict, record: dict, seen: dict) -> None:
    """One record, state.json, with a section per feature. Passthrough writes it when it acts; when only
    SR-IOV acts, the record as the node holds it is kept and only the sriov section changes."""
    section = sriov.pop("record")
    if plan["state"] != "present":
        return  # removal: passthrough removes state.json
    if plan["state_record"] is not None:
        if section:
            plan["state_record"]["sriov"] = section
        return
    on_node = {k: v for k, v in record.items() if k != "_comment"}
    if section is None and "sriov" not in on_node:
        return
    kept = dict(on_node, sriov=section) if section else {k: v for k, v in on_node.items() if k != "sriov"}
    plan["act"] = True
    if not section and not any(kept.get(k) for k in kept):
        plan["files"] = plan["files"] + [{"path": STATE_RECORD, "mode": "0644", "template": None, "rebuild": None,
                                          "backup": None}]
        return
    plan["state_record"] = kept
    plan["keeps_state_dir"] = True
    plan["files"] = plan["files"] + [{"path": STATE_RECORD, "mode": "0644", "template": "state.json.j2",
                                      "rebuild": None, "backup": None}]


def watched_paths() -> dict[str, list[str]]:
    """What pci_facts must look at and read for every feature's plan."""
    features = (passthrough_paths(), sriov_paths())
    read = [p for f in features for p in f["read"]]
    # Every owned file is read, so foreign_files() can tell the role's from someone else's.
    owned = [f[0] for f in OWNED_FILES + SRIOV_FILES]
    return {"paths": sorted({p for f in features for p in f["paths"]}),
            "read": read + [p for p in owned if p not in read]}


def plan_node(facts: dict, inputs: dict, seen: dict | None = None, corosync_conf: str | None = None) -> dict:
    """The node's whole plan: every feature's planner, composed; the inputs are checked first, once."""
    clean, problems = checked_inputs(inputs)
    plan = compose(make_plan(facts, clean, seen or {}, corosync_conf), facts, clean, seen or {})
    plan["errors"] = problems + [e for e in plan["errors"] if e not in problems]
    return plan
