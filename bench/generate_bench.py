"""Benchmark ``baoke generate``: wall time, rows per file and peak memory at a given scale.

    python bench/generate_bench.py --scale 1000000
    python bench/generate_bench.py --scale 20000 --json

Files go to a temporary directory (removed afterwards) unless ``--out`` is given. Peak RSS is
the process high-water mark (``ru_maxrss``) sampled after generation, so run one scale per
process for a clean figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from baoke.simulate.generator import GenerateConfig, generate


def run(scale: int, seed: int, out: Path | None, verbose: bool) -> dict[str, Any]:
    """Generate ``scale`` customers and return the measurements."""

    def progress(msg: str) -> None:
        if verbose:
            print(f"  {time.perf_counter() - started:7.1f}s  {msg}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="baoke-gen-") as tmp:
        target = out or Path(tmp)
        started = time.perf_counter()
        result = generate(GenerateConfig(customers=scale, seed=seed), target, progress=progress)
        seconds = time.perf_counter() - started
        sizes = {f.kind: f.path.stat().st_size for f in result.files}
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {
        "customers": scale,
        "seed": seed,
        "dealers": result.config.dealer_count,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "total_rows": sum(f.rows for f in result.files),
        "total_mb": round(sum(sizes.values()) / 1e6, 1),
        "files": [
            {
                "kind": f.kind,
                "file": f.path.name,
                "rows": f.rows,
                "dirty_rows": f.dirty_rows,
                "duplicate_rows": f.duplicate_rows,
                "vin_warnings": f.vin_warnings,
                "encoding": f.encoding,
                "mb": round(sizes[f.kind] / 1e6, 1),
            }
            for f in result.files
        ],
    }


def print_table(report: dict[str, Any]) -> None:
    """Human-readable summary."""
    print(
        f"generate: {report['customers']:,} customers, {report['dealers']} dealers, "
        f"seed {report['seed']}"
    )
    print(f"{'kind':<17}{'rows':>13}{'dirty':>9}{'dups':>8}{'MB':>10}  encoding")
    for f in report["files"]:
        print(
            f"{f['kind']:<17}{f['rows']:>13,}{f['dirty_rows']:>9,}{f['duplicate_rows']:>8,}"
            f"{f['mb']:>10,.1f}  {f['encoding']}"
        )
    print(f"{'total':<17}{report['total_rows']:>13,}{'':>17}{report['total_mb']:>10,.1f}")
    print(f"wall time: {report['seconds']:.1f} s   peak RSS: {report['peak_rss_mb']:,.0f} MB")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20_000, help="number of customers")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="keep the files here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    report = run(args.scale, args.seed, args.out, args.verbose)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
