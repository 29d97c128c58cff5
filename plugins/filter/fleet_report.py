# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet report (Markdown and JSON) of pci_facts results."""

from __future__ import annotations

from ansible_collections.vfio.proxmox.plugins.module_utils.plan._report import fleet_report

DOCUMENTATION = r"""
---
name: fleet_report
version_added: "0.1.0"
author: vfio.proxmox contributors (@vfio-proxmox)
short_description: Build a fleet discovery report in Markdown and JSON
description:
  - Collects the M(vfio.proxmox.pci_facts) results of several hosts into one report, as Markdown for people
    and JSON for tools. Hosts without pci_facts results are left out.
positional: hosts
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: The hosts to report, usually C(ansible_play_hosts_all).
    type: list
    elements: str
    required: true
  generated_at:
    description:
      - When the report's content was made, ISO 8601. When not given, the time of O(previous) if that report says
        the same about the same hosts, else now in UTC.
    type: str
    version_added: "0.3.0"
  previous:
    description:
      - The JSON text of an earlier report, or empty. When its hosts are the same, its C(generated_at) is kept, so
        writing the report again changes nothing (the discover playbook passes the file it wrote before).
    type: str
    version_added: "0.3.0"
"""

EXAMPLES = r"""
- name: Write the Markdown report
  ansible.builtin.copy:
    content: "{{ (hostvars | vfio.proxmox.fleet_report(ansible_play_hosts_all)).markdown }}"
    dest: /tmp/vfio-discovery.md
    mode: "0644"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
---
_value:
  description: The report as two complete documents, each a string.
  type: dict
  contains:
    markdown:
      description: For people - a section per host with its readiness and a table of its NICs.
      type: str
    json:
      description:
        - For tools - one JSON object with C(format) (V(vfio.proxmox.fleet_report)), C(format_version)
          (V(1); a reader checks both before it reads on), C(generated_at) (ISO 8601, UTC) and C(hosts), an
          object by inventory name with C(readiness), C(nics) (the rows of the Markdown table), C(iommu_groups)
          and C(handmade) (as M(vfio.proxmox.pci_facts) returns them).
        - The layout is the JSON Schema C(docs/docsite/fleet-report.schema.json) in the collection.
        - Format version 1 is new in 0.3.0; 0.1.0 wrote the hosts at the top level, without a version.
      type: str
"""


class FilterModule:
    """vfio.proxmox.fleet_report"""

    def filters(self):
        return {"fleet_report": fleet_report}
