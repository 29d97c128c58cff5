"""The benchmark's outputs: a Markdown report, a PNG plot, the table in DEVELOPMENT.md."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "ping": "ping (floor)",
    "discover": "discover",
    "role_first": "role, first run",
    "role_rerun": "role, converged re-run",
    "baseline_first": "guide baseline, first run",
    "baseline_rerun": "guide baseline, re-run",
}
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _num(value, digits: int = 1) -> str:
    return "-" if value is None else "%.*f" % (digits, value)


def wall_time_table(summary: dict) -> str:
    counts = sorted(summary["fleet"], key=int)
    lines = ["| phase | " + " | ".join("N=%s" % n for n in counts) + " |",
             "|---|" + "---:|" * len(counts)]
    for phase, label in LABELS.items():
        lines.append("| %s | %s |" % (label, " | ".join(
            "%s s" % _num(summary["fleet"][n][phase]["seconds"]) for n in counts)))
    lines.append("| **re-run / ping** | %s |" % " | ".join(
        "**%s×**" % _num(summary["fleet"][n]["ratios"]["rerun_over_ping"]) for n in counts))
    lines.append("| **re-run / baseline re-run** | %s |" % " | ".join(
        "**%s×**" % _num(summary["fleet"][n]["ratios"]["rerun_over_baseline_rerun"], 2) for n in counts))
    lines.append("| **first run / baseline first run** | %s |" % " | ".join(
        "**%s×**" % _num(summary["fleet"][n]["ratios"]["first_over_baseline_first"], 2) for n in counts))
    return "\n".join(lines)


def per_host_table(summary: dict) -> str:
    largest = max(summary["fleet"], key=int)
    rows = summary["fleet"][largest]
    lines = ["| phase (N=%s) | tasks | tasks on the node | SSH sessions | update-initramfs | update-grub |" % largest,
             "|---|---:|---:|---:|---:|---:|"]
    for phase, label in LABELS.items():
        row = rows[phase]
        calls = row["tool_calls_per_host"]
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            label, _num(row["tasks_per_host"]), _num(row["remote_tasks_per_host"]),
            _num(row["ssh_sessions_per_host"]), _num(calls["update-initramfs"]), _num(calls["update-grub"])))
    return "\n".join(lines)


def pci_facts_table(rows: list[dict]) -> str:
    lines = ["| PCI functions | pci_facts (median) | per function |", "|---:|---:|---:|"]
    for row in rows:
        lines.append("| %d | %.1f ms | %.0f µs |" % (row["functions"], row["seconds"] * 1000, row["us_per_function"]))
    return "\n".join(lines)


def profile_table(summary: dict, phase: str, top: int = 8) -> str:
    largest = max(summary["fleet"], key=int)
    seconds = summary["fleet"][largest][phase]["task_seconds"]
    total = sum(seconds.values()) or 1.0
    lines = ["| task (%s, N=%s) | seconds | share |" % (LABELS[phase], largest), "|---|---:|---:|"]
    for name, value in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        lines.append("| %s | %.2f | %.0f%% |" % (name.replace("|", "\\|"), value, 100 * value / total))
    return "\n".join(lines)


def markdown(summary: dict) -> str:
    meta = summary["meta"]
    return "\n\n".join([
        "# Benchmark: vfio.proxmox against the ping floor and the guide's way",
        "Measured %s on %s (%s cores), %s simulated `guide-intel` nodes over SSH, forks %s, pipelining on; "
        "median of %d runs. Command: `scripts/bench`." % (
            meta["date"], meta["machine"], meta["cores"], "/".join(str(n) for n in sorted(summary["fleet"], key=int)),
            meta["forks"], meta["repeat"]),
        "## Wall time", wall_time_table(summary),
        "![wall time against N](wall-time.png)",
        "## Per host", per_host_table(summary),
        "## Where the converged re-run spends its time", profile_table(summary, "role_rerun"),
        "## pci_facts alone on generated trees", pci_facts_table(summary["pci_facts"]),
        "Growth from %d to %d functions: %.1f× the time for %.0f× the functions." % (
            summary["pci_facts"][0]["functions"], summary["pci_facts"][-1]["functions"],
            summary["pci_facts"][-1]["seconds"] / summary["pci_facts"][0]["seconds"],
            summary["pci_facts"][-1]["functions"] / summary["pci_facts"][0]["functions"]),
    ]) + "\n"


def plot(summary: dict, path: Path) -> None:
    counts = sorted(summary["fleet"], key=int)
    fig, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    for phase, label in LABELS.items():
        axes.plot([int(n) for n in counts], [summary["fleet"][n][phase]["seconds"] for n in counts],
                  marker="o", label=label)
    axes.set_xlabel("simulated nodes (N)")
    axes.set_ylabel("wall time, median (s)")
    axes.set_xticks([int(n) for n in counts])
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("vfio.proxmox: wall time against fleet size")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def update_readme(readme: Path, summary: dict) -> None:
    """Replace the benchmark block of DEVELOPMENT.md with the latest tables."""
    block = "\n\n".join([
        README_BEGIN,
        "Latest run (%s, %s cores, median of %d; full report: [bench/results/latest.md]"
        "(bench/results/latest.md)):" % (summary["meta"]["date"], summary["meta"]["cores"], summary["meta"]["repeat"]),
        wall_time_table(summary), per_host_table(summary),
        "![wall time against N](bench/results/wall-time.png)",
        README_END])
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise SystemExit("bench: %s has no %s ... %s block" % (readme.name, README_BEGIN, README_END))
    readme.write_text(pattern.sub(lambda _match: block, text))
