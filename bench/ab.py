"""Time commands back to back: each once to warm up, then N rounds of each in turn.

    python bench/ab.py N -- COMMAND ... [-- COMMAND ...]

Alternating command by command makes the machine's load weigh on every command alike,
so the ratios of one run compare even on a shared machine. Prints each command's median
(and fastest) wall time; stops at the first command that fails.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not argv[0].isdigit() or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    rounds = int(argv[0])
    commands: list[list[str]] = []
    for arg in argv[1:]:
        if arg == "--":
            commands.append([])
        else:
            commands[-1].append(arg)
    samples: list[list[float]] = [[] for _ in commands]
    for i in range(rounds + 1):
        for command, times in zip(commands, samples, strict=True):
            start = time.perf_counter()
            proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                print(f"{' '.join(command)} failed:\n{proc.stderr.decode(errors='replace')}",
                      file=sys.stderr)
                return 1
            if i:  # the first round warms up
                times.append(time.perf_counter() - start)
    for command, times in zip(commands, samples, strict=True):
        print(f"{statistics.median(times) * 1000:8.1f} ms  (fastest {min(times) * 1000:.1f})  "
              f"{' '.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
