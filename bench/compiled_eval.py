"""CPU per evaluation of the demo order mapping: the interpreter against flows.compiled.

    .venv/bin/python bench/compiled_eval.py [--order PATH] [--rounds 7]

Evaluates the mapping of the task that introduced ``flows.compiled`` on the 20-line retail
order, in this process: ``mapping.evaluate`` (jsonata-python, what a sandbox child runs,
without the IPC) and ``compiled.evaluate`` (the in-process fast path). Both are warmed up
(compiled and cached) first; each figure is the best of ``--rounds`` batches of process CPU
time, the figure that depends least on other users of the machine. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import ORDER_TO_OMS  # noqa: E402
from flows import compiled, mapping  # noqa: E402

ORDER = Path(__file__).resolve().parents[2] / (
    "shared/fixtures/retail/commerce-order-created-20-lines.json"
)
MAPPING = ORDER_TO_OMS  # the throughput benchmark's frozen demo mapping


def per_call_ms(run: Callable[[], Any], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            run()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=Path, default=ORDER)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    order = json.loads(args.order.read_text("utf-8"))

    expected = mapping.evaluate(MAPPING, order)
    fast = compiled.evaluate(MAPPING, order)
    if fast is compiled.UNKNOWN or json.dumps(fast) != json.dumps(expected):
        sys.exit("compiled.evaluate does not answer the demo mapping as the interpreter does")

    interpreter = per_call_ms(lambda: mapping.evaluate(MAPPING, order), 100, args.rounds)
    closures = per_call_ms(lambda: compiled.evaluate(MAPPING, order), 1000, args.rounds)
    condition = per_call_ms(
        lambda: compiled.evaluate_condition("financial_status = 'paid'", order), 10000, args.rounds
    )
    print(f"order: {args.order.name} ({args.order.stat().st_size:,} bytes)")
    print(f"interpreter (mapping.evaluate)   {interpreter:8.3f} ms CPU per call")
    print(f"compiled (compiled.evaluate)     {closures:8.3f} ms CPU per call")
    print(f"speed-up                         {interpreter / closures:8.1f} x")
    print(f"filter financial_status = 'paid' {condition * 1000:8.1f} us CPU per call (compiled)")


if __name__ == "__main__":
    main()
