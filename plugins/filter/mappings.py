# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mappings playbook's filters: the cluster's desired mappings, and the record of what it made."""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.proxmox.plugins.module_utils._mappings import (
    MappingsError,
    attachments,
    mapping_plan,
    record_after,
)


def mapping_plan_filter(hostvars, hosts: list) -> list:
    data = {}
    for host in hosts:
        facts = hostvars[host].get("ansible_facts") or {}
        plan = hostvars[host].get("passthrough_plan") or {}
        data[host] = {"node": (facts.get("vfio_host") or {}).get("node_name"), "devices": plan.get("devices") or []}
    try:
        return mapping_plan(data)
    except MappingsError as err:
        raise AnsibleFilterError("mapping_plan: %s" % err) from None


def mapping_attachments(plan: list) -> list:
    return attachments(plan)


def mapping_record(seen: list, mapping_results: list | None = None, attach_results: list | None = None) -> dict:
    """seen: the record file's state on each node, as vfio.proxmox.file_state reports it (content read)."""
    records = []
    for state in seen or []:
        text = (state or {}).get("content")
        if not text:
            continue
        try:
            record = json.loads(text)
        except ValueError:
            raise AnsibleFilterError("mapping_record: %s is not JSON - fix or remove it (it lists what the "
                                     "mappings playbook made)" % state.get("path")) from None
        records.append(record)
    return record_after(records, mapping_results or [], attach_results or [])


class FilterModule:
    """vfio.proxmox mapping filters."""

    def filters(self):
        return {"mapping_plan": mapping_plan_filter, "mapping_attachments": mapping_attachments,
                "mapping_record": mapping_record}
