"""How fast a core runs right now: a fixed pure-Python loop timed in CPU time (bench only).

The host behind this kind of VM slows a core by 10-80 % for tens of seconds at a time (a busy
neighbour on the same physical core, most likely): invisible in the guest's steal time, but a
fixed loop's CPU time shows it. ``bench/run.py`` runs one probe per core through each measured
window; a probe costs its core about 0.1 % (0.5 ms every 0.5 s). Prints one line per sample:
µs of CPU time for the loop.

    taskset -c 0 .venv/bin/python bench/probe.py --duration 20
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import argparse
import time


def sample(iterations: int) -> float:
    start = time.thread_time_ns()
    s = 0
    for i in range(iterations):
        s += i * i
    return (time.thread_time_ns() - start) / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    end = time.monotonic() + min(args.duration, 600.0)
    sample(args.iterations)  # warm up
    while time.monotonic() < end:
        print(f"{sample(args.iterations):.1f}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
