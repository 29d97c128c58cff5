"""Fleet benchmark: the role against the ping floor and the guide's way, on N simulated nodes.

  scripts/bench                         # N = 5 10 20, median of 3, updates DEVELOPMENT.md
  scripts/bench --nodes 5 --repeat 1    # a quick look
  scripts/bench --pci-facts-only        # re-time pci_facts, keep the last fleet numbers

Never part of the pass/fail tests. Writes bench/results/latest.{md,json},
bench/results/wall-time.png and the run logs (bench/results/logs/, not committed).
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / ".ansible" / "collections"))
from bench import fleet, pci_facts_scale, report  # noqa: E402

RESULTS = REPO / "bench" / "results"


def median_phase(runs: list[dict]) -> dict:
    """The median of each number over the repetitions; task timings from the median run."""
    ordered = sorted(runs, key=lambda run: run["seconds"])
    middle = ordered[len(ordered) // 2]
    merged = {"seconds": statistics.median(run["seconds"] for run in runs), "all_seconds": [r["seconds"] for r in runs],
              "task_seconds": middle["task_seconds"], "tool_calls_per_host": middle["tool_calls_per_host"]}
    for key in ("tasks_per_host", "remote_tasks_per_host", "ssh_sessions_per_host"):
        values = [run[key] for run in runs if run[key] is not None]
        merged[key] = statistics.median(values) if values else None
    return merged


def ratios(phases: dict) -> dict:
    seconds = {phase: row["seconds"] for phase, row in phases.items()}
    return {
        "rerun_over_ping": seconds["role_rerun"] / seconds["ping"],
        "rerun_over_baseline_rerun": seconds["role_rerun"] / seconds["baseline_rerun"],
        "first_over_baseline_first": seconds["role_first"] / seconds["baseline_first"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[5, 10, 20], help="fleet sizes")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per fleet size (median taken)")
    parser.add_argument("--no-readme", action="store_true", help="leave DEVELOPMENT.md as it is")
    parser.add_argument("--pci-facts-only", action="store_true",
                        help="re-time pci_facts only; the fleet numbers stay those of bench/results/latest.json")
    args = parser.parse_args()
    if args.pci_facts_only:
        summary = json.loads((RESULTS / "latest.json").read_text())
        summary["pci_facts"] = pci_facts_scale.measure(repeat=7)
        summary["meta"]["pci_facts_date"] = datetime.date.today().isoformat()
        return write(summary, readme=not args.no_readme)
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    runs: dict[int, list[dict]] = {n: [] for n in args.nodes}
    for repetition in range(args.repeat):
        for count in args.nodes:  # sizes interleaved, so drift over the run hits all of them alike
            print("bench: repetition %d/%d, %d nodes" % (repetition + 1, args.repeat, count), flush=True)
            runs[count].append(fleet.measure(count, logs))
            print("bench:   " + ", ".join("%s %.1f s" % (phase, row["seconds"])
                                          for phase, row in runs[count][-1].items()), flush=True)

    summary_fleet = {}
    for count, reps in runs.items():
        phases = {phase: median_phase([rep[phase] for rep in reps]) for phase in reps[0]}
        summary_fleet[str(count)] = dict(phases, ratios=ratios(phases))
    print("bench: pci_facts on generated trees", flush=True)
    config = configparser.ConfigParser()
    config.read(REPO / "ansible.cfg")
    summary = {
        "meta": {"date": datetime.date.today().isoformat(), "machine": platform.platform(terse=True),
                 "cores": os.cpu_count(), "repeat": args.repeat, "forks": config.get("defaults", "forks")},
        "fleet": summary_fleet,
        "pci_facts": pci_facts_scale.measure(repeat=7),
    }
    return write(summary, readme=not args.no_readme)


def write(summary: dict, readme: bool) -> int:
    (RESULTS / "latest.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "latest.md").write_text(report.markdown(summary))
    report.plot(summary, RESULTS / "wall-time.png")
    if readme:
        report.update_readme(REPO / "DEVELOPMENT.md", summary)
    print(report.markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
