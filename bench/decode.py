"""Decode cost per KB of hostile frames: ``protocol.decode`` next to ``json.loads``.

    python bench/decode.py [--sizes 16,64,128] [--repeat 5]

For every frame of the adversarial corpus the tests use (escaped quotes in a
string that never closes, long strings, deep nesting, huge numbers, …), at each
size: the CPU time of ``protocol.decode`` (the nesting check, the JSON parse
and the protocol's checks) and of a bare ``json.loads`` on the same text, each
the least of ``--repeat`` runs, in microseconds per KB. Linear work shows as a
flat column. The nesting check of the previous code (a string pattern with a
required closing quote) is measured too, at the smallest size only: it is
quadratic, and at 128 KB it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from channel_server.handlers import protocol  # noqa: E402
from test_protocol import ADVERSARIAL  # noqa: E402

#: The nesting check as it was: the same walk, with the previous string pattern.
_PREVIOUS_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def previous_nesting_check(body: str) -> bool:
    depth = 0
    for bracket in re.findall(r"[\[\]{}]", _PREVIOUS_STRING.sub("", body)):
        depth += 1 if bracket in "[{" else -1
        if depth > protocol.MAX_NESTING:
            return True
    return False


def cpu(call, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        try:
            call()
        except (ValueError, RecursionError):
            pass  # json.loads refuses most of the corpus; its cost still counts
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,128", help="frame sizes in KB (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    rules = protocol.Rules()

    print(f"{'frame':<22}{'KB':>5}{'decode µs/KB':>15}{'json.loads µs/KB':>19}{'ratio':>8}")
    for name, build in ADVERSARIAL.items():
        for size in sizes:
            body = build(size * 1024)
            kb = len(body.encode("utf-8")) / 1024
            decode = cpu(lambda: protocol.decode(body, rules), options.repeat)
            loads = cpu(lambda: json.loads(body), options.repeat)
            print(f"{name:<22}{kb:>5.0f}{decode / kb * 1e6:>15.1f}{loads / kb * 1e6:>19.1f}{decode / loads:>8.1f}")
    print()
    smallest = sizes[0]
    print(f"previous nesting check, {smallest} KB frames (the baseline this replaces):")
    for name, build in ADVERSARIAL.items():
        body = build(smallest * 1024)
        kb = len(body.encode("utf-8")) / 1024
        before = cpu(lambda: previous_nesting_check(body), 1)
        now = cpu(lambda: protocol._nests_deeper_than(body, protocol.MAX_NESTING), options.repeat)
        print(f"  {name:<22} previous {before / kb * 1e6:>12.1f} µs/KB   now {now / kb * 1e6:>8.1f} µs/KB")


if __name__ == "__main__":
    main()
