"""Import throughput: service orders into SQLite and PostgreSQL, first load and re-import.

    python bench/import_bench.py --scale 1000000            # ~1M service-order rows
    python bench/import_bench.py --scale 200000 --backends sqlite --json

A synthetic group with about ``scale`` service orders is generated (``scale / 5`` customers),
its dealers, staff, customers and vehicles are imported untimed, then ``baoke import
service-orders`` runs in a child process, timed, twice: the first load (all inserts) and a
re-import of the same file (all unchanged). Peak memory is the child's maximum RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from baoke.config import load_settings
from baoke.ingest.pipeline import find_kind_files, import_file
from baoke.simulate.generator import GenerateConfig, generate
from baoke.store.db import ensure_schema, make_engine
from child import run_baoke

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _child_import(url: str, orders: Path) -> dict[str, Any]:
    """Run one `baoke import service-orders` in a child; wall seconds and its peak RSS."""
    run = run_baoke(
        ["import", "service-orders", str(orders), "--json"], {"BAOKE_DATABASE_URL": url}
    )
    return {"seconds": run.seconds, "summary": json.loads(run.output), "peak_rss_mb": run.peak_mb}


def _prepare(url: str, gen_dir: Path) -> Path:
    engine = make_engine(url)
    ensure_schema(engine)
    zone = load_settings().zone
    orders = None
    for kind, path in find_kind_files(gen_dir):
        if kind == "service-orders":
            orders = path
        elif kind in {"dealers", "staff", "customers", "vehicles"}:
            import_file(engine, kind, path, tz=zone)
    engine.dispose()
    assert orders is not None
    return orders


def _backend_url(backend: str, workdir: Path) -> tuple[str, Any]:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    base = os.environ.get("BAOKE_TEST_DATABASE_URL", PG_DEFAULT)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", (admin, schema)


def _drop(cleanup: Any) -> None:
    if cleanup is None:
        return
    admin, schema = cleanup
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=200_000, help="service-order rows (about)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "scale": args.scale,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="baoke-bench-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        gen = generate(
            GenerateConfig(customers=max(100, args.scale // 5), seed=args.seed), workdir / "gen"
        )
        results["generate_seconds"] = time.perf_counter() - started
        results["service_order_rows"] = gen.file("service-orders").rows
        for backend in args.backends.split(","):
            url, cleanup = _backend_url(backend, workdir)
            try:
                orders = _prepare(url, workdir / "gen")
                first = _child_import(url, orders)
                again = _child_import(url, orders)
            finally:
                _drop(cleanup)
            for label, run in (("first load", first), ("re-import", again)):
                rows = run["summary"]["read"]
                results["runs"].append(
                    {
                        "backend": backend,
                        "pass": label,
                        "rows": rows,
                        "seconds": round(run["seconds"], 2),
                        "rows_per_second": round(rows / run["seconds"]),
                        "peak_rss_mb": round(run["peak_rss_mb"]),
                        "inserted": run["summary"]["inserted"],
                        "unchanged": run["summary"]["unchanged"],
                        "quarantined": run["summary"]["quarantined"],
                    }
                )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"machine: {results['machine']}; generated {results['service_order_rows']:,} "
        f"service orders in {results['generate_seconds']:.1f}s"
    )
    print(f"{'backend':<11}{'pass':<12}{'rows':>10}{'seconds':>9}{'rows/s':>10}{'peak MB':>9}")
    for r in results["runs"]:
        print(
            f"{r['backend']:<11}{r['pass']:<12}{r['rows']:>10,}{r['seconds']:>9.1f}"
            f"{r['rows_per_second']:>10,}{r['peak_rss_mb']:>9,}"
        )


if __name__ == "__main__":
    main()
