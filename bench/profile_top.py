"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): top functions (bench only).

    .venv/bin/python bench/profile_top.py bench/out/bridge-150/profile.txt [--top 30]

Prints, per function (file:function), the share of samples where it is on top of the stack
(self) and anywhere on it (inclusive), and the same grouped by package / module area.
"""

# ruff: noqa: T201  (a command-line tool: it prints)

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{m.group('func')}"


def area(name: str) -> str:
    path = name.split(":", 1)[0]
    if path.startswith("voicebridge/"):
        return "/".join(path.split("/")[:2])
    if path.startswith("asyncio/"):
        return "asyncio"
    return path.split("/", 1)[0] or "?"


def load(path: Path) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    selfs: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        selfs[frames[-1]] += n
        areas[area(frames[-1])] += n
        for f in set(frames):
            incl[f] += n
    return selfs, incl, areas, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    selfs, incl, areas, total = load(args.profile)
    print(f"{total} samples")
    print("\nself time by area:")
    for name, n in areas.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("\nself time:")
    for name, n in selfs.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("\ninclusive time:")
    for name, n in incl.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
