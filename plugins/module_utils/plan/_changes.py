# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this run must change: the desired state (_desired.py) against what file_state saw.

The role renders the plan's templates on the controller and hands the texts here, so a
converged run needs no round trip beyond pci_facts and file_state, and skips every
writing task at once. The rebuilds follow from what changes, plus any rebuild an
interrupted run left pending.
"""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._file_state import text_checksum
from ansible_collections.vfio.proxmox.plugins.module_utils.discovery._own_files import KERNEL_CMDLINE
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._cmdline import edit
from ansible_collections.vfio.proxmox.plugins.module_utils.plan._desired import REBUILD_ORDER, satisfied


def holds_block(text: str | None, marker: str, lines: list[str]) -> bool:
    """Whether `text` holds, on whole lines, exactly the block blockinfile writes."""
    if text is None:
        return False
    block = [marker.replace("{mark}", "BEGIN"), *lines, marker.replace("{mark}", "END")]
    return "\n" + "\n".join(block) + "\n" in "\n" + text.rstrip("\n") + "\n"


def _same_file(have: dict, content: str, mode: str) -> bool:
    return (have.get("type"), have.get("checksum"), have.get("mode"), have.get("uid"), have.get("gid")) == (
        "file", text_checksum(content), mode, 0, 0)


def changes(plan: dict, seen: dict, rendered: list[str], check_mode: bool = False) -> dict:
    """{write, remove, backup, restore, dirs, remove_dirs, block, cmdline, rebuild, any, files, finish,
    after_release}.

    rendered: the texts of plan.files that have a template, in that order. `files` and `finish` are
    owned_files' arguments before the rebuilds (mark, files) and after them (mark gone, empty dirs);
    `after_release`, on a removal that releases live, the records (state.json, sriov.conf) removed after the
    release.
    """
    if not plan.get("act"):
        return {"write": [], "remove": [], "backup": [], "restore": [], "dirs": [], "remove_dirs": [],
                "block": False, "cmdline": False, "rebuild": [], "remove_state_dir": False, "any": False,
                "files": [], "copies": [], "adopt": [], "give_back": [],
                "units": {"disable": [], "enable": [], "reload": False},
                "finish": {"remove": [], "remove_empty_dirs": []},
                "after_release": {"remove": [], "remove_empty_dirs": []}}
    templated = [f for f in plan["files"] if f["template"]]
    if len(templated) != len(rendered):
        raise ValueError("%d templates but %d rendered texts" % (len(templated), len(rendered)))
    texts = {f["path"]: text for f, text in zip(templated, rendered)}
    write, remove, rebuild = [], [], set(plan["pending"]) | set(plan["adopt"]["rebuild"])
    rebuild |= {r["rebuild"] for r in plan["give_back"] if r["rebuild"]}
    # Adoption edits hand-made files in the same call, before the block and the command line are edited.
    adopted = {f["path"]: f["content"] for f in plan["adopt"]["files"]}
    for item in plan["files"]:
        have = seen.get(item["path"]) or {"exists": False}
        if item["template"] and not _same_file(have, texts[item["path"]], item["mode"]):
            write.append(item["path"])
        elif not item["template"] and have.get("exists"):
            remove.append(item["path"])
        else:
            continue
        if item["rebuild"]:
            rebuild.add(item["rebuild"])

    block = plan["block"]
    block_change = False
    if block is not None:  # None: only another feature (SR-IOV) acts, passthrough leaves the block alone
        text = adopted.get(block["path"], (seen.get(block["path"]) or {}).get("content"))
        marker_line = block["marker"].replace("{mark}", "BEGIN")
        block_change = (not holds_block(text, block["marker"], block["lines"]) if block["lines"] is not None
                        else marker_line in (text or ""))
    if block_change:
        rebuild.add("initramfs")

    cmdline_change = False
    if plan["cmdline"] and plan["cmdline"]["remove_recorded"]:
        cmdline_change = True  # the record exists (desired() checked): the module removes it at least
    elif plan["cmdline"]:
        current = adopted.get(KERNEL_CMDLINE, (seen.get(KERNEL_CMDLINE) or {}).get("content") or "")
        # A token to prune is in the record, so the record changes at least.
        cmdline_change = bool(plan["cmdline"].get("prune")) or edit(
            current, plan["cmdline"]["present"], [])["content"] != current
    if cmdline_change:
        rebuild.add("refresh")

    # A removal that also releases live (vfio_bind, sriov_vfs after the file step) keeps the records that name
    # what to release until the release is done: a run stopped in between still knows it next time.
    releases = plan["state"] != "present" and bool(plan.get("bind_live") or (plan.get("sriov") or {}).get("live"))
    records = [p for p in remove if releases and p.startswith(plan["state_dir"] + "/")]
    remove = [p for p in remove if p not in records]
    exists = {path for path, state in seen.items() if state.get("exists")}
    backup = [f["path"] for f in plan["files"] if f.get("backup") and f["path"] in write]
    restore = [r for r in plan["restore_backups"] if r["backup"] in exists]
    ordered = [r for r in REBUILD_ORDER if r in rebuild]
    dirs = [d for d in plan["dirs"] + plan["adopt"]["dirs"] if d not in exists]
    if ordered and plan["state_dir"] not in exists and plan["state_dir"] not in dirs:
        dirs.insert(0, plan["state_dir"])  # the pending-rebuild mark lives there
    remove_dirs = [d for d in plan["remove_dirs"] if d in exists]
    remove_state_dir = plan["state_record"] is None and not plan.get("keeps_state_dir") and (
        plan["state_dir"] in exists or plan["state_dir"] in dirs)
    # What owned_files writes, in order: the pending mark before anything else, then the owned files.
    mark = [{"path": plan["pending_path"], "content": "\n".join(ordered) + "\n", "mode": "0644"}] if ordered else []
    files = mark + plan["adopt"]["files"] + [{"path": f["path"], "content": texts[f["path"]], "mode": f["mode"]}
                                             for f in templated if f["path"] in write]
    # After the last rebuild: the mark goes, then the adoption manifest and copies' directories (given
    # back by then), then the directories the role made, when empty.
    cleanup = plan["adopt_cleanup"]
    finish = {"remove": ([plan["pending_path"]] if ordered else []) + [p for p in cleanup["remove"] if p in exists],
              "remove_empty_dirs": cleanup["remove_empty_dirs"] + remove_dirs
              + ([plan["state_dir"]] if remove_state_dir and not records else [])}
    after_release = {"remove": records, "remove_empty_dirs": [plan["state_dir"]] if remove_state_dir and records
                     else []}
    adopt = [f["path"] for f in plan["adopt"]["files"]]
    # Units of the features (SR-IOV's): disabled before their file goes, enabled after it is written, and
    # systemd reloaded whenever a unit file changed.
    # In check mode a unit whose file is not on the node yet cannot be asked about (systemd_service fails
    # on a unit it cannot find): the write of its file is what check mode reports then.
    unit = (plan.get("sriov") or {}).get("unit") or {}
    askable = bool(unit) and (not check_mode or bool((seen.get(unit["path"]) or {}).get("exists")))
    units = {"disable": [unit["name"]] if unit.get("disable") else [],
             "enable": [unit["name"]] if unit.get("enable") and askable else [],
             "reload": bool(unit) and unit["path"] in write + remove}
    return {"write": write, "remove": remove, "backup": backup, "restore": restore, "dirs": dirs,
            "remove_dirs": remove_dirs, "block": block_change, "cmdline": cmdline_change, "rebuild": ordered,
            "remove_state_dir": remove_state_dir, "files": files, "finish": finish,
            "after_release": after_release,
            "copies": plan["adopt"]["copies"], "adopt": adopt,
            "give_back": [{"path": r["path"], "backup": r["backup"]} for r in plan["give_back"]],
            "units": units,
            "any": bool(write or remove or restore or dirs or remove_dirs or block_change or cmdline_change
                        or ordered or remove_state_dir or adopt or plan["give_back"] or finish["remove"] or records
                        or units["enable"] or units["disable"])}


def verify(plan: dict, facts: dict) -> list[str]:
    """Why the node is not ready for a VM yet (empty: verified), from pci_facts read after the run."""
    host = facts.get("vfio_host") or {}
    devices = {d["address"]: d for d in facts.get("vfio_pci_devices") or []}
    groups = facts.get("vfio_iommu_groups") or {}
    problems = []
    if not host.get("iommu_active"):
        problems.append("the IOMMU is not active (/sys/kernel/iommu_groups is empty)")
    running = host.get("cmdline") or []
    missing = [t for t in plan["cmdline_tokens"] if not satisfied(t, running)]
    if missing:
        problems.append("kernel command line lacks %s" % " ".join(missing))
    for target in plan["targets"]:
        device = devices.get(target["address"])
        if not device:
            problems.append("%s is gone" % target["address"])
            continue
        if device["driver"] != "vfio-pci":
            problems.append("%s (%s) is on %s, not vfio-pci" % (target["address"], target["id"], device["driver"]))
        # A group is usable by a VM only when every endpoint in it is on vfio-pci or has no driver.
        for peer in groups.get(device.get("iommu_group") or "", []):
            other = devices.get(peer) or {}
            if peer != target["address"] and not other.get("is_bridge") and other.get("driver") not in (
                    None, "vfio-pci", "pci-stub"):
                problems.append("%s: IOMMU group %s is not viable - %s is on %s" % (
                    target["address"], device["iommu_group"], peer, other["driver"]))
    return problems


PREDICTED = {"would_bind": "vfio-pci", "would_release": None}


def outcome(plan: dict, bind_results: list[dict] | None, check_mode: bool = False) -> dict:
    """{bound: address -> driver after the run, moved_live, reboot_required, reboot_reasons, reboot_now, notes}.

    reboot_now: the role reboots the node in this run (a reboot is required, the plan acts and allows it).
    notes: what the run says about the reboot - the one check mode would do, or the one left to the
    administrator (only where passthrough's checks apply, as verification waits for it).

    bind_results: vfio_bind's `results`, or None when no live binding ran. In check mode they say
    what would happen (would_bind, would_release), so the prediction matches the real run.
    """
    bound = dict(plan["bind_drivers"])
    moved = False
    # Released, but no driver took it (drivers_probe never loads a module: its native driver was not loaded on
    # this boot, vfio-pci had the device first) - the port has no interface until the next boot.
    driverless = []
    for result in bind_results or []:
        status = result["status"]
        bound[result["address"]] = PREDICTED[status] if status in PREDICTED else result["driver"]
        moved = moved or status in ("bound", "released", "would_bind", "would_release")
        if status == "released" and not result.get("driver"):
            driverless.append(result["address"])
    reasons = []
    if plan.get("reboot_for_cmdline"):
        reasons.append("kernel command line: %s" % " ".join(plan["reboot_tokens"]))
    wanted = {t["address"]: t["state"] for t in plan["bind_targets"]}
    waiting = sorted(a for a, d in bound.items() if wanted.get(a) == "present" and d != "vfio-pci")
    held = sorted(a for a, d in bound.items() if wanted.get(a) == "absent" and d == "vfio-pci")
    if waiting:
        reasons.append("binding: %s not on vfio-pci yet" % ", ".join(waiting))
    if held:
        reasons.append("release: %s still on vfio-pci" % ", ".join(held))
    if driverless:
        reasons.append("release: %s left vfio-pci but no driver took it (its driver is not loaded on this boot)"
                       % ", ".join(sorted(driverless)))
    now = bool(reasons) and bool(plan.get("act")) and plan.get("reboot") == "if_needed"
    notes = []
    if now and check_mode:
        notes.append("Check mode: the real run would reboot (%s)" % "; ".join(reasons))
    if reasons and plan.get("verify") and not (now and not check_mode):
        notes.append("Reboot required (%s); set passthrough_reboot=if_needed, or reboot and run vfio.proxmox.verify."
                     % "; ".join(reasons))
    return {"bound": bound, "moved_live": moved, "reboot_required": bool(reasons), "reboot_reasons": reasons,
            "reboot_now": now, "notes": notes}


def step(plan: dict, facts: dict, seen: dict, rendered: list[str], check_mode: bool = False,
         notes: bool = True) -> dict:
    """The role's whole controller-side step after discovery: {changes, outcome, act, report}.

    changes: changes() above. outcome: outcome() as it stands when no device moves live in this run
    (the role computes it again after vfio_bind when one does). act: the node needs any task after
    this step - something to write, bind or apply to SR-IOV, a reboot, or a verification that fails on
    the facts just read (they are current when nothing moves) - so a converged node skips the rest in
    one step. report: what the administrator reads - warnings marked, the reasons, and the reboot notes
    once they are final (and `notes`: the entry points that only plan or verify leave them out). A plan
    with errors is refused: nothing is compared and nothing acts.
    """
    if plan["errors"]:  # refused: nothing is compared or decided, the role stops at the refusal
        return {"changes": changes({"act": False}, seen, []), "act": False, "report": [],
                "outcome": {"bound": {}, "moved_live": False, "reboot_required": False, "reboot_reasons": [],
                            "reboot_now": False, "notes": []}}
    found = changes(plan, seen, rendered, check_mode)
    result = outcome(plan, None, check_mode)
    problems = verify(plan, facts) if plan.get("verify") and not result["reboot_required"] and not check_mode \
        else []
    act = bool(found["any"] or plan.get("bind_live") or (plan.get("sriov") or {}).get("live")
               or result["reboot_now"] or problems)
    report = []
    if plan["warnings"] or plan["devices"] or (plan.get("sriov") or {}).get("involved"):
        report = ["WARNING: " + w for w in plan["warnings"]] + list(plan["reasons"])
    if notes and not plan.get("bind_live"):
        report += result["notes"]
    return {"changes": found, "outcome": result, "act": act, "report": report}
