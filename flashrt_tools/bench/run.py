"""`flashrt bench`: run each package's benchmarks/bench_*.py on the GPU.

Each bench module defines ``benchmark(ctx) -> list[row]`` (rows built with
``harness.measure_row``) and may define ``TARGETS``/``target_notes(rows)``.
Writes ``results/<gpu-slug>/<package>.json`` and regenerates the package's
``benchmarks/RESULTS.md`` and ``benchmarks/results-<gpu-slug>.png``.
"""

import dataclasses
import json
import time

import torch

from ..repo import RESULTS, load_file, select
from ..validation import load_built, reference_of
from . import harness, report


@dataclasses.dataclass
class BenchContext:
    kernel: object
    reference: object
    copy_gbps: float
    quick: bool
    log: object = print


def merge_rows(old_rows, new_rows):
    """Rows of an earlier run with the re-measured ones replaced (same op and shape),
    in the earlier order; rows new to this run are appended."""
    fresh = {(r["op"], r["shape"]): r for r in new_rows}
    merged = [fresh.pop((r["op"], r["shape"]), r) for r in old_rows]
    return merged + [r for r in new_rows if (r["op"], r["shape"]) in fresh]


def _note_of(note, row):
    key = f"{row['op']} {row['shape']}"
    return note.startswith(key) and note[len(key):len(key) + 1] in (":", " ")


def merge_notes(old_notes, new_notes, new_rows, rows):
    """Target notes after a merge: a note starts with "op shape"; the re-measured
    rows' notes replace the earlier ones, and the notes follow the order of the
    merged ``rows`` (as a full run writes them)."""
    kept = [n for n in old_notes if not any(_note_of(n, r) for r in new_rows)]
    notes = kept + new_notes
    ordered = [n for r in rows for n in notes if _note_of(n, r)]
    return ordered + [n for n in notes if n not in ordered]


def bench(package_names=(), *, quick=False, out_root=None, only=None, budget=None,
          log=print) -> int:
    """Run the benchmarks. ``only``: substrings of "op shape"; just those rows are
    measured and merged into the package's existing JSON (its other rows are kept).
    ``budget``: seconds per package; rows reached later are not measured, the record
    keeps the earlier run's rows for them (each row carries its date) and lists them
    under ``not_measured``."""
    if not torch.cuda.is_available():
        raise SystemExit("flashrt bench needs a CUDA GPU (timings on the interpreter mean nothing)")
    env = harness.environment()
    log(f"flashrt bench on {env['gpu']} (driver {env['driver']}, torch {env['torch']}, "
        f"triton {env['triton']}, CUDA {env['cuda']})")
    env["copy_gbps"] = harness.copy_bandwidth_gbps()
    log(f"device-to-device copy ceiling: {env['copy_gbps']:.0f} GB/s (read + write)")
    out_dir = (out_root and __import__("pathlib").Path(out_root) or RESULTS) / env["gpu_slug"]
    out_dir.mkdir(parents=True, exist_ok=True)
    harness.select_rows(only)
    for pkg in select(package_names):
        modules = sorted((pkg.root / "benchmarks").glob("bench_*.py"))
        if not modules:
            log(f"[{pkg.name}] no benchmarks/bench_*.py; skipped")
            continue
        kernel = load_built(pkg)
        ctx = BenchContext(kernel, reference_of(kernel), env["copy_gbps"], quick, log)
        rows, notes = [], []
        out_of_time = harness.set_deadline(budget)
        t0 = time.perf_counter()
        for path in modules:
            module = load_file(path, f"_flashrt_bench_{pkg.python_name}_{path.stem}")
            log(f"[{pkg.name}] {path.name}")
            new_rows = [r for r in module.benchmark(ctx) if not r.get("skipped")]
            for r in new_rows:
                r["date"] = env["date"]
            rows += new_rows
            if hasattr(module, "target_notes"):
                notes += module.target_notes(new_rows)
        json_path = out_dir / f"{pkg.name}.json"
        if out_of_time:
            log(f"[{pkg.name}] time budget spent: {len(out_of_time)} rows not measured")
        if (only or out_of_time) and json_path.exists():
            old = json.loads(json_path.read_text())
            for r in old["rows"]:
                r.setdefault("date", old["environment"]["date"])
            merged = merge_rows(old["rows"], rows)
            notes = merge_notes(old.get("target_notes", []), notes, rows, merged)
            rows = merged
            quick = old.get("quick", quick)
            log(f"[{pkg.name}] merged {len(rows)} rows (re-measured: "
                f"{', '.join(only) if only else 'all but the rows past the budget'})")
        record = {"package": pkg.name, "environment": env, "quick": quick, "rows": rows,
                  "target_notes": notes, "seconds": round(time.perf_counter() - t0, 1)}
        if out_of_time:
            record["not_measured"] = list(out_of_time)
        json_path.write_text(json.dumps(record, indent=1) + "\n")
        log(f"[{pkg.name}] {len(rows)} rows -> {json_path}")
        report.write_package_report(pkg, record, log=log)
    harness.set_deadline(None)
    return 0
