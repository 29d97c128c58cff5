"""Helpers for review 19b: render the role's real templates and 'apply' a run's changes to a seen dict."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._changes import changes
from tests.unit.review19.review19_helpers import on_node

TEMPLATES = Path(__file__).resolve().parents[3] / "roles" / "passthrough" / "templates"


def _combine(a: dict, b: dict) -> dict:
    return dict(a, **b)


def _to_nice_json(value, indent=4) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, separators=(",", ": "))


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True,
                         trim_blocks=True)
ENV.filters.update(combine=_combine, to_nice_json=_to_nice_json)


def render(plan: dict) -> list[str]:
    return [ENV.get_template(f["template"]).render(ansible_managed="Ansible managed", passthrough_plan=plan)
            for f in plan["files"] if f["template"]]


def apply(plan: dict, seen: dict, released: bool = True) -> dict:
    """The node's files after the role ran `plan` on `seen` (owned files, block, directories); returns
    (new seen, the changes the run made). released=False: the run stopped after its file step, before the live
    release and the records' removal after it (act.yml)."""
    texts = render(plan)
    change = changes(plan, seen, texts)
    after = dict(seen)
    for directory in change["dirs"]:
        after[directory] = {"exists": True, "type": "directory"}
    by_path = {f["path"]: t for f, t in zip([f for f in plan["files"] if f["template"]], texts)}
    modes = {f["path"]: f["mode"] for f in plan["files"]}
    for path in change["write"]:
        after[path] = on_node(path, by_path[path], modes[path])
    for path in change["remove"]:
        after[path] = {"exists": False}
    if change["block"]:
        block = plan["block"]
        text = (after.get(block["path"]) or {}).get("content") or ""
        begin, end = (block["marker"].replace("{mark}", m) for m in ("BEGIN", "END"))
        if begin in text:
            head, rest = text.split(begin + "\n", 1)
            tail = rest.partition(end + "\n")[2]
            text = head + tail
        if block["lines"] is not None:
            text = (text if not text or text.endswith("\n") else text + "\n") + "\n".join(
                [begin] + block["lines"] + [end]) + "\n"
        after[block["path"]] = on_node(block["path"], text)
    steps = [change["finish"]] + ([change["after_release"]] if released else [])
    for step in steps:
        for path in step["remove"]:
            after[path] = {"exists": False}
        for directory in step["remove_empty_dirs"]:
            if not any(p.startswith(directory + "/") and s.get("exists") for p, s in after.items()):
                after[directory] = {"exists": False}
    return after, change
