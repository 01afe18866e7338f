"""Render the JSON lines written by ``throughput.py --json-out FILE`` as Markdown tables.

.venv/bin/python bench/table.py [bench/results.jsonl]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def throughput_row(r: dict[str, Any]) -> str:
    a, load, runs = r["args"], r["load"], r["runs"]
    cpu = r["cpu_s"]

    def per(k: str) -> float:
        return 1000 * cpu.get(k, 0) / max(1, r["delivered"])

    equal = "=" if r["delivered"] == r["accepted"] else "≠"
    cells = [
        f"{a['db']}, {a['workers']} worker{'s' if a['workers'] > 1 else ''}",
        f"{r['accepted']} ({_f(r['accepted_per_s'], 1)}/s)",
        f"{_f(load['p50_ms'])} / {_f(load['p99_ms'])}",
        _f(r["delivered_per_s_during_load"], 1),
        f"**{_f(r['delivered_per_s'], 1)}**",
        f"{_f(runs['e2e_ms']['p50'] / 1000, 1)} / {_f(runs['e2e_ms']['p95'] / 1000, 1)}",
        _f(runs["claim_to_finish_ms_p50"]),
        f"{r['not_succeeded']}; {r['delivered']} {equal} {r['accepted']}",
        f"{per('web'):.0f} / {per('workers'):.0f}"
        + (f" / {per('postgres (server, all dbs)'):.0f}" if a["db"] == "postgresql" else ""),
        f"{r.get('other_cpu_s', 0):.0f}",
        r.get("code", {}).get("sha256", "–")[:7],
    ]
    return "| " + " | ".join(cells) + " |"


THROUGHPUT_HEADER = (
    "| run (c=10, 20 s) | accepted | intake p50 / p99 ms | delivered/s during load "
    "| delivered/s end to end | e2e p50 / p95 s | claim→finish p50 ms "
    "| not succeeded; sink vs accepted | CPU ms/msg: web / workers (/ postgres) "
    "| others' CPU s during | code |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def footprint_row(db: str, group: list[dict[str, Any]]) -> str:
    def peak(key: str) -> float:
        values = [v for r in group for v in (r["peaks"].get(key) or []) if v]
        return max(values) if values else 0

    web = max(
        (r["peaks"]["web_master_kb"] or 0)
        + sum(k or 0 for k in r["peaks"]["web_workers_kb"])
        + sum(k or 0 for k in r["peaks"].get("web_sandboxes_kb", []))
        for r in group
    )
    kb_run = [r["bytes_per_run_marginal"] / 1024 for r in group]
    return (
        f"| {db} | {_mb(web)} (master {_mb(max(r['peaks']['web_master_kb'] for r in group))}"
        f", gunicorn workers ≤ {_mb(peak('web_workers_kb'))} each, sandboxes ≤ "
        f"{_mb(peak('web_sandboxes_kb'))} each) | {_mb(peak('workers_kb'))} + sandbox "
        f"{_mb(peak('worker_sandboxes_kb'))} | "
        f"{_mb(max(r['peaks']['scheduler_kb'] for r in group))} | "
        f"{min(kb_run):.1f}–{max(kb_run):.1f} |"
    )


FOOTPRINT_HEADER = (
    "| database | peak RSS web, MB | peak RSS per RQ worker, MB | scheduler, MB "
    "| KB stored per run (above the empty schema) |\n|---|---|---|---|---|"
)


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.jsonl")
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    runs.sort(key=lambda r: (r["args"]["db"], r["args"]["workers"], r["when"]))
    print(THROUGHPUT_HEADER)
    for r in runs:
        print(throughput_row(r))
    print()
    print(FOOTPRINT_HEADER)
    for db in sorted({r["args"]["db"] for r in runs}):
        print(footprint_row(db, [r for r in runs if r["args"]["db"] == db]))


if __name__ == "__main__":
    main()
