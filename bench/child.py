"""Run ``baoke …`` in a child process and measure its wall time and its own peak memory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

# The child reports VmHWM: it belongs to the address space created by exec, whereas
# ru_maxrss would include the forking parent's memory.
CHILD = """
import sys
from baoke.cli import main
sys.argv = ["baoke", *sys.argv[1:]]
try:
    main()
finally:
    with open("/proc/self/status") as status:
        hwm = [line for line in status if line.startswith("VmHWM:")][0]
    print(hwm.strip(), file=sys.stderr)
"""


@dataclass
class ChildRun:
    """What one child run printed, how long it took and its peak resident memory."""

    output: str
    seconds: float
    peak_mb: float


def run_baoke(args: list[str], env: dict[str, str]) -> ChildRun:
    """Run ``baoke *args`` with extra environment ``env``; SystemExit with stderr on failure."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *args],
            stdout=out,
            stderr=err,
            env={**os.environ, **env},
            check=False,
        )
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        errors = err.read().decode(errors="replace")
        if done.returncode != 0:
            raise SystemExit(f"baoke {' '.join(args)} failed: {errors}")
        output = out.read().decode()
    peak_kb = int(errors.rsplit("VmHWM:", 1)[1].split()[0])
    return ChildRun(output=output, seconds=seconds, peak_mb=peak_kb / 1024)
