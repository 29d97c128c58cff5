# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readable reports of pci_facts results: a per-host text table and a fleet report (the nic_table and
fleet_report filters)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

# The fleet report JSON's layout (docs/fleet-report.schema.json); raised on any change a reader must know of.
REPORT_FORMAT = "vfio.proxmox.fleet_report"
REPORT_FORMAT_VERSION = 1


def _ip_list(netdev: dict) -> str:
    addrs = []
    for addr in netdev["addresses"]:
        if addr.get("scope") == "link":
            continue
        where = "" if addr["interface"] == netdev["name"] else "@" + addr["interface"]
        addrs.append("%s/%s%s" % (addr["address"], addr["prefixlen"], where))
    return ", ".join(addrs)


def _interfaces(dev: dict) -> str:
    parts = []
    for net in dev["netdevs"]:
        text = net["name"]
        if net["uppers"]:
            text += " > " + " > ".join(net["uppers"])
        state = net["operstate"] or "?"
        if net["speed"]:
            state += " %d Mb/s" % net["speed"]
        text += " (%s)" % state
        ips = _ip_list(net)
        if ips:
            text += " " + ips
        parts.append(text)
    return "; ".join(parts) or "-"


def _management(dev: dict) -> str:
    reasons = [r for net in dev["netdevs"] for r in net["management_reasons"]]
    return "MGMT (%s)" % "; ".join(reasons) if reasons else ""


def nic_rows(facts: dict) -> list[dict]:
    """One row per network function, with what an operator needs to choose."""
    rows = []
    for dev in facts.get("vfio_pci_devices", []):
        if not dev.get("is_network"):
            continue
        name = " ".join(x for x in (dev.get("vendor_name"), dev.get("device_name")) if x)
        rows.append({
            "address": dev["address"],
            "id": "%s:%s" % (dev["vendor"], dev["device"]),
            "driver": dev["driver"] or "-",
            "group": dev["iommu_group"] if dev["iommu_group"] is not None else "-",
            "peers": ", ".join(dev["iommu_group_peers"]) or "-",
            "interfaces": _interfaces(dev),
            "management": _management(dev),
            "name": name or "-",
        })
    return rows


def readiness(facts: dict) -> dict:
    host = facts.get("vfio_host", {})
    boot = host.get("boot_loader", {})
    remap = host.get("interrupt_remapping")
    return {
        "iommu": "active (%d groups)" % len(facts.get("vfio_iommu_groups", {})) if host.get("iommu_active")
        else "NOT active (no IOMMU groups)",
        "interrupt_remapping": {True: "enabled", False: "disabled", None: "unknown"}[remap],
        "cpu": host.get("cpu_vendor") or "unknown",
        "kernel": host.get("kernel_release") or "unknown",
        "boot_loader": "%s (%s)" % (boot.get("name", "unknown"), boot.get("source", "")),
        "vfio_modules": ", ".join(host.get("vfio_modules_loaded", [])) or "none loaded",
        "management": ", ".join(m["interface"] for m in host.get("management_interfaces", [])) or "none found",
    }


def handmade_lines(facts: dict) -> list[str]:
    """Hand-made passthrough configuration, one line each, with what is wrong with it."""
    out = []
    for entry in (facts.get("vfio_host") or {}).get("handmade") or []:
        line = "%s:%d: %s" % (entry["file"], entry["line"], entry["text"])
        out.append(line + "".join("  <- %s" % p for p in entry.get("problems") or []))
    return out


COLUMNS = [("address", "ADDRESS"), ("id", "ID"), ("driver", "DRIVER"), ("group", "GROUP"),
           ("peers", "GROUP PEERS"), ("interfaces", "INTERFACES"), ("management", "MANAGEMENT"), ("name", "NAME")]


def nic_table(facts: dict) -> str:
    """Plain-text table of the host's NICs followed by its readiness."""
    rows = nic_rows(facts)
    widths = {key: max([len(title)] + [len(str(r[key])) for r in rows]) for key, title in COLUMNS}
    lines = ["  ".join(title.ljust(widths[key]) for key, title in COLUMNS).rstrip()]
    for row in rows:
        lines.append("  ".join(str(row[key]).ljust(widths[key]) for key, dummy in COLUMNS).rstrip())
    if not rows:
        lines.append("(no network functions found)")
    lines.append("")
    for key, value in readiness(facts).items():
        lines.append("%-20s %s" % (key.replace("_", " ") + ":", value))
    handmade = handmade_lines(facts)
    if handmade:
        lines += ["", "configured by hand (%d lines):" % len(handmade)] + ["  " + line for line in handmade]
    return "\n".join(lines)


def _earlier_time(previous: str | None, hosts: dict) -> str | None:
    """The generated_at of an earlier report (its JSON text) that says the same about the same hosts."""
    try:
        earlier = json.loads(previous or "")
    except ValueError:
        return None
    if not isinstance(earlier, dict) or (earlier.get("format"), earlier.get("format_version")) != (
            REPORT_FORMAT, REPORT_FORMAT_VERSION):
        return None
    same = earlier.get("hosts") == json.loads(json.dumps(hosts))
    return earlier.get("generated_at") if same and isinstance(earlier.get("generated_at"), str) else None


def fleet_report(hostvars: dict, hosts: list, generated_at: str | None = None, previous: str | None = None) -> dict:
    """{"markdown": ..., "json": ...} for every host that has pci_facts results.

    The JSON document names its format and version and when its content was made (ISO 8601, UTC); the hosts
    are under "hosts". The time is generated_at when given, else that of `previous` (the JSON text of an
    earlier report) when it says the same about the same hosts - so a second run changes nothing - else now."""
    data = {}
    md = ["# VFIO discovery report", "", "", ""]  # line 3: when, once the hosts are known
    for host in sorted(hosts):
        facts = hostvars.get(host, {}).get("ansible_facts", {})
        if "vfio_pci_devices" not in facts:
            continue
        data[host] = {"readiness": readiness(facts), "nics": nic_rows(facts),
                      "iommu_groups": facts.get("vfio_iommu_groups", {}),
                      "handmade": (facts.get("vfio_host") or {}).get("handmade") or []}
        md += ["## %s" % host, ""]
        md += ["- **%s**: %s" % (k.replace("_", " "), v) for k, v in data[host]["readiness"].items()]
        md += ["", "| " + " | ".join(t for dummy, t in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for row in data[host]["nics"]:
            md.append("| " + " | ".join(str(row[k]).replace("|", "\\|") for k, dummy in COLUMNS) + " |")
        if data[host]["handmade"]:
            md += ["", "Configured by hand:", ""]
            md += ["- `%s:%d: %s`%s" % (e["file"], e["line"], e["text"],
                                        "".join(" - %s" % p for p in e.get("problems") or []))
                   for e in data[host]["handmade"]]
        md.append("")
    generated_at = generated_at or _earlier_time(previous, data) or datetime.now(timezone.utc).isoformat(
        timespec="seconds")
    md[2] = "Generated %s." % generated_at
    document = {"format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION, "generated_at": generated_at,
                "hosts": data}
    return {"markdown": "\n".join(md), "json": json.dumps(document, indent=2, sort_keys=True) + "\n"}
