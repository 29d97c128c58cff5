# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mappings playbook's filters: the cluster's desired mappings, and the record of what it made."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.proxmox.plugins.module_utils._mappings import (
    MappingsError,
    attach_problems,
    attachments,
    mapping_plan,
    parse_record,
    record_text,
    union,
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


def mapping_record(seen: list) -> dict:
    """seen: the record file's state on each node, as vfio.proxmox.file_state reports it (content read)."""
    try:
        return union([parse_record((state or {}).get("content"), (state or {}).get("path")) for state in seen or []])
    except MappingsError as err:
        raise AnsibleFilterError("mapping_record: %s" % err) from None


def mapping_record_text(record: dict) -> str:
    return record_text(record)


def mapping_attach_problems(per_host: list) -> list:
    return attach_problems(per_host)


class FilterModule:
    """vfio.proxmox mapping filters."""

    def filters(self):
        return {"mapping_plan": mapping_plan_filter, "mapping_attachments": mapping_attachments,
                "mapping_record": mapping_record, "mapping_record_text": mapping_record_text,
                "mapping_attach_problems": mapping_attach_problems}
