"""Timing harness (see BENCHMARKING.md): what every package benchmark uses.

* GPU time under CUDA-graph replay is the headline: N calls captured in one
  graph, rotating over enough distinct input sets that they do not sit in L2,
  replayed repeatedly; the median replay time / N per call.
* The host-issued loop (one Python call per op, events around the loop) is
  reported beside it: what a user who does not capture graphs sees.
* Baselines: eager (the reference, warmed), torch.compile of the reference
  (default mode, compile time excluded) *only after its output verifies
  against eager*, else ``unsupported``; library/peer where a package has one.
* Ceilings measured in the same run: 1 GiB device-to-device copy (bytes read +
  written over time).
"""

import collections
import datetime
import math
import platform
import statistics
import subprocess
import time
from typing import Callable, Sequence

import torch

from ..tolerance import Verdict

TIMING_METHOD = (
    "CUDA-graph replay: N calls captured in one graph over L2-rotated input sets, "
    "median of {trials} replays / N; host loop: CUDA events around {loop} Python calls, "
    "median of {trials} trials. Compile: torch.compile default mode, dynamic=False, "
    "compile time excluded, output verified against eager before timing."
)
TRIALS = 15
LOOP_CALLS = 50

# `flashrt bench --only`: substrings of "op shape" to measure; None = every row.
_ONLY = None
_DEADLINE = None  # time.monotonic() past which rows are skipped (flashrt bench --budget)
_OUT_OF_TIME = []


def select_rows(substrings):
    """Measure only rows whose "op shape" contains one of ``substrings`` (None: all)."""
    global _ONLY
    _ONLY = tuple(substrings) if substrings else None


def set_deadline(seconds):
    """Rows reached ``seconds`` from now are skipped (None: no limit); returns the list
    that collects their "op shape" (``flashrt bench --budget``)."""
    global _DEADLINE, _OUT_OF_TIME
    _DEADLINE = None if seconds is None else time.monotonic() + seconds
    _OUT_OF_TIME = []
    return _OUT_OF_TIME


def skipped_row(op: str, shape: str):
    """A placeholder row when ``op shape`` is not selected or the time budget is spent,
    else None."""
    if _ONLY is not None and not any(s in f"{op} {shape}" for s in _ONLY):
        return {"op": op, "shape": shape, "skipped": True}
    if _DEADLINE is not None and time.monotonic() > _DEADLINE:
        _OUT_OF_TIME.append(f"{op} {shape}")
        return {"op": op, "shape": shape, "skipped": True}
    return None


def gpu_slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def _nvidia_smi(field):
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def environment() -> dict:
    import triton

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_slug": gpu_slug(torch.cuda.get_device_name(0)),
        "sm_count": props.multi_processor_count,
        "l2_bytes": props.L2_cache_size,
        "capability": f"{props.major}.{props.minor}",
        "driver": _nvidia_smi("driver_version"),
        "clocks_sm_mem_mhz": _nvidia_smi("clocks.sm,clocks.mem"),
        "max_clocks_sm_mem_mhz": _nvidia_smi("clocks.max.sm,clocks.max.mem"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timing_method": TIMING_METHOD.format(trials=TRIALS, loop=LOOP_CALLS),
    }


def _event_ms(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def copy_bandwidth_gbps(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy of ``nbytes``: (read + written bytes) / median time."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    ms = statistics.median(_event_ms(lambda: dst.copy_(src)) for _ in range(TRIALS))
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3) / 1e9


def rotation_sets(bytes_per_call: int) -> int:
    """Distinct input sets so that one pass over them is >= 3x the L2 size."""
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return max(2, min(64, math.ceil(3 * l2 / max(1, bytes_per_call))))


def same_size_copy_us(nbytes: int, n_sets: int) -> float:
    """A device-to-device copy moving ``nbytes`` (read + written) under the same
    method: the bandwidth a memory-bound op of this size can hope for (small
    transfers do not reach the 1 GiB ceiling: ramp-up, tail, launch)."""
    half = max(1, nbytes // 2)
    src = [torch.empty(half, dtype=torch.uint8, device="cuda").random_() for _ in range(n_sets)]
    dst = [torch.empty_like(s) for s in src]
    us = graph_us(lambda i: dst[i].copy_(src[i]), list(range(n_sets)))
    del src, dst
    return us


def capture_graph(body: Callable[[], None]) -> "torch.cuda.CUDAGraph":
    """``body()`` captured into a CUDA graph on a side stream, replayed once (warm)."""
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        with torch.cuda.graph(graph, stream=stream):
            body()
    torch.cuda.current_stream().wait_stream(stream)
    graph.replay()
    torch.cuda.synchronize()
    return graph


def graph_us(call: Callable, sets: Sequence, min_calls: int = 64) -> float:
    """Median GPU time per call under CUDA-graph replay, rotating over ``sets``."""
    for s in sets:  # warm: JIT, autotune, allocator
        call(s)
    torch.cuda.synchronize()
    reps = max(1, math.ceil(min_calls / len(sets)))
    # Outputs a call allocates (eager / compiled baselines) stay alive for the next
    # len(sets) calls, so each call writes a distinct buffer, as ours do into their
    # per-set out buffers. Dropped at once, every call would reuse one block of the
    # graph's pool that stays hot in L2 (outputs of a few MB then look faster than a
    # same-size device copy).
    recent = collections.deque(maxlen=len(sets))

    def body():
        for _ in range(reps):
            for s in sets:
                recent.append(call(s))
    graph = capture_graph(body)
    recent.clear()
    n = reps * len(sets)
    per_call = statistics.median(_event_ms(graph.replay) for _ in range(TRIALS)) * 1e3 / n
    del graph
    return per_call


def kernel_resources(kernel) -> dict:
    """Registers a thread and spilled bytes of a launched Triton kernel (what a kernel
    launch returns; empty where unknown, e.g. under the interpreter)."""
    regs, spills = getattr(kernel, "n_regs", None), getattr(kernel, "n_spills", None)
    return {} if regs is None else {"regs": regs, "spills": spills}


def verified_timings(calls: dict, check: Callable, sets: Sequence) -> dict:
    """Tune-script candidates: ``calls`` maps a name to ``call(s)``, which computes into
    its output tensor and returns it. Each is run twice on ``sets[0]``; it is timed
    (``graph_us`` over ``sets``) only if both runs give the same bits and ``check(output)``
    returns None (else the message). Returns {name: {"us": ...} or {"error": ...}}; a
    candidate that raises (does not compile, out of resources) is reported, not fatal."""
    out = {}
    for name, call in calls.items():
        try:
            first = call(sets[0]).clone()
            problem = None if same_bits(first, call(sets[0])) else "two calls differ"
            problem = problem or check(first)
            out[name] = {"error": problem} if problem else {"us": graph_us(call, sets)}
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
    return out


def timings_line(timings: dict) -> str:
    """``verified_timings``' result as one line: name:µs, or name:ERR."""
    return " ".join(f"{k}:{v['us']:.2f}" if "us" in v else f"{k}:ERR"
                    for k, v in timings.items())


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN payloads included), any dtype."""
    return a.shape == b.shape and torch.equal(a.contiguous().view(torch.uint8),
                                              b.contiguous().view(torch.uint8))


class Clock:
    """Seconds since ``start`` (a time.monotonic() reading) against ``budget``: the
    tune scripts' --budget (they start counting before torch is imported)."""

    def __init__(self, budget, start):
        self.budget, self.start = budget, start

    def elapsed(self):
        return time.monotonic() - self.start

    def left(self, reserve=0.0):
        return self.elapsed() < self.budget - reserve


def host_loop_us(call: Callable, sets: Sequence) -> float:
    """Median time per call of a host-issued Python loop (launch overhead included)."""
    for s in sets:
        call(s)
    torch.cuda.synchronize()

    def loop():
        for i in range(LOOP_CALLS):
            call(sets[i % len(sets)])

    return statistics.median(_event_ms(loop) for _ in range(TRIALS)) * 1e3 / LOOP_CALLS


def verified_compile(reference_fn: Callable, sets: Sequence,
                     judge_all: Callable[..., Sequence[Verdict]], emulate_modes=(False, True)):
    """torch.compile(reference_fn) if its outputs verify against eager on ``sets[0]``.

    Returns (compiled_fn or None, status). Tries plain Inductor first, then with
    ``emulate_precision_casts`` (Inductor may drop an intermediate bf16 rounding);
    ``emulate_modes``: the settings to try, in order (a sweep that knows plain Inductor does
    not verify skips that compile). ``judge_all(got, want)`` returns one Verdict per
    output.
    """
    import torch._inductor.config as inductor_config

    want = reference_fn(sets[0])
    verdicts = []
    for emulate in emulate_modes:
        torch._dynamo.reset()
        with inductor_config.patch(emulate_precision_casts=emulate):
            compiled = torch.compile(reference_fn, dynamic=False)
            try:
                got = compiled(sets[0])
            except Exception as e:  # a baseline that does not compile is reported, not fatal
                return None, f"unsupported: {type(e).__name__}: {str(e)[:120]}"
        verdicts = judge_all(got, want)
        if all(v.ok for v in verdicts):
            status = "verified" + (" (emulate_precision_casts=True)" if emulate else "")
            if emulate:
                return _with_patch(compiled, inductor_config), status
            return compiled, status
    return None, "unsupported: output differs from eager: " + "; ".join(v.message for v in verdicts)


def _with_patch(compiled, inductor_config):
    def call(*args):
        with inductor_config.patch(emulate_precision_casts=True):
            return compiled(*args)
    return call


def label_row(row: dict) -> str:
    """headline: beat the strongest baseline measured; support: only eager to beat."""
    strong = [row.get(k) for k in ("compile_us", "library_us", "peer_us") if row.get(k)]
    if not strong:
        return "support" if row["ours_us"] < row["eager_us"] else "compatibility"
    return "headline" if row["ours_us"] < min(strong) else "compatibility"


def reject_note(row: dict) -> str:
    """The target note of a row that failed verification."""
    return f"{row['op']} {row['shape']}: REJECTED (verification failed)"


def target_status(row: dict, checks, extra: str = "") -> str:
    """"met" or "MISSED a, b" for ``checks`` = [(target, ok)], then ``extra`` and the
    row's share of a same-size device copy (the figure that says how far a memory-bound
    op is from what its transfer size allows)."""
    missed = [name for name, ok in checks if not ok]
    status = ("met" if not missed else "MISSED " + ", ".join(missed)) + extra
    if row.get("pct_same_size_copy"):
        status += f" [{row['pct_same_size_copy']:.0f}% of a same-size device copy]"
    return status


def finish_row(row: dict, copy_gbps: float) -> dict:
    """Derived columns: speedups, effective bandwidth, % of the copy ceiling, label."""
    ours = row["ours_us"]
    row["speedup_vs_eager"] = row["eager_us"] / ours
    row["speedup_vs_compile"] = row["compile_us"] / ours if row.get("compile_us") else None
    row["gbps"] = row["bytes"] / (ours * 1e-6) / 1e9 if row.get("bytes") else None
    row["pct_copy_bw"] = 100.0 * row["gbps"] / copy_gbps if row["gbps"] else None
    copy_us = row.get("same_size_copy_us")
    row["pct_same_size_copy"] = 100.0 * copy_us / ours if copy_us else None
    row["tflops"] = row["flops"] / (ours * 1e-6) / 1e12 if row.get("flops") else None
    row.setdefault("library_us", None)
    row.setdefault("peer_us", None)
    row["label"] = label_row(row)
    return row


def measure_row(*, op: str, shape: str, sets: Sequence, ours: Callable, reference: Callable,
                formats: Sequence[str], nbytes: int, copy_gbps: float, model: str = "",
                flops: int = 0, library: Callable = None, peer: Callable = None,
                compare_kwargs: dict = None, log=print) -> dict:
    """Verify every timed path on ``sets[0]``, then time ours and each baseline.

    ``formats``: one tolerance format per output; ``compare_kwargs``: per-format
    keyword arguments for the comparators (e.g. {"gemm": {"p99_abs": ...}}).
    """
    from ..tolerance import compare

    skipped = skipped_row(op, shape)
    if skipped:
        return skipped

    def judge_all(got, want):
        got = got if isinstance(got, (tuple, list)) else (got,)
        want = want if isinstance(want, (tuple, list)) else (want,)
        return [compare(f, g, w, **(compare_kwargs or {}).get(f, {}))
                for f, g, w in zip(formats, got, want)]

    row = {"op": op, "shape": shape, "model": model, "bytes": nbytes, "flops": flops or None}
    verdicts = judge_all(ours(sets[0]), reference(sets[0]))
    row["max_abs_err"] = max(v.max_abs for v in verdicts)
    if not all(v.ok for v in verdicts):
        row.update(label="reject", note="; ".join(v.message for v in verdicts))
        log(f"  REJECT {op} {shape}: {row['note']}")
        return row
    compiled, row["compile_status"] = verified_compile(reference, sets, judge_all)
    row["ours_us"] = graph_us(ours, sets)
    row["eager_us"] = graph_us(reference, sets)
    row["compile_us"] = graph_us(compiled, sets) if compiled else None
    for name, fn in (("library", library), ("peer", peer)):
        if fn is not None:
            ok = all(v.ok for v in judge_all(fn(sets[0]), reference(sets[0])))
            row[f"{name}_us"] = graph_us(fn, sets) if ok else None
    row["ours_host_us"] = host_loop_us(ours, sets)
    row["eager_host_us"] = host_loop_us(reference, sets)
    row["compile_host_us"] = host_loop_us(compiled, sets) if compiled else None
    row["input_sets"] = len(sets)
    row["same_size_copy_us"] = same_size_copy_us(nbytes, len(sets)) if nbytes else None
    finish_row(row, copy_gbps)
    comp = f"{row['compile_us']:.2f}" if row["compile_us"] else "n/a"
    log(f"  {op:28s} {shape:28s} ours {row['ours_us']:8.2f} us  eager {row['eager_us']:8.2f}  "
        f"compile {comp:>8s}  {row['gbps'] or 0:7.0f} GB/s ({row['pct_copy_bw'] or 0:4.1f}%)  "
        f"{row['label']}")
    return row
