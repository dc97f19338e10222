"""Host-side helpers shared by every package: input validation, device guard,
and the Triton-interpreter support that lets the same kernels run on CPU.

Validation raises ``RuntimeError`` with the message phrases of the spec
("<name> must be a CUDA tensor", "<name> must be contiguous",
"<name> must have dtype torch.bfloat16", "<a> and <b> must be on the same CUDA
device"), always before any kernel launch, so a rejected call writes nothing.
"""

import contextlib
import functools
import os
import threading
from typing import NamedTuple

import torch

_INT32_MAX = 2**31 - 1


def cdiv(x: int, y: int) -> int:
    """Host-side ceil(x / y): ``triton.cdiv`` is a ConstexprFunction in Triton 3.6 and
    costs ~2 us per call from Python, on every launch that sizes a grid with it."""
    return (x + y - 1) // y


def next_power_of_2(n: int) -> int:
    """Host-side ``triton.next_power_of_2`` (the same bit cascade, ~40x cheaper)."""
    n -= 1
    n |= n >> 1
    n |= n >> 2
    n |= n >> 4
    n |= n >> 8
    n |= n >> 16
    n |= n >> 32
    return n + 1


@functools.lru_cache(maxsize=None)
def sm_count(device, interpreted: int = 4) -> int:
    """Streaming multiprocessors of ``device``; under the interpreter (CPU tensors)
    ``interpreted``, small enough that CPU tests reach multi-program launch paths."""
    if device.type != "cuda":
        return interpreted
    return torch.cuda.get_device_properties(device).multi_processor_count


class RowConfig(NamedTuple):
    """Launch shape of a row kernel (each row package picks one with its own measured
    ``row_config`` rule).

    chunked: one row per program in ``block_d``-wide chunks (rows too wide for
    registers); else ``block_r`` rows of ``block_d`` (next power of two of the width)
    per tile, in registers. persistent > 0: a grid of ``persistent`` programs per SM
    that loop over the tiles, loading the next tile before finishing the current one
    (and row-invariant vectors once per program); 0: one program per tile.
    """
    chunked: bool
    block_r: int
    block_d: int
    num_warps: int
    persistent: int = 0


FEW_ROWS_PER_SM = 8  # up to this many rows per SM a row kernel's call is one latency-bound wave


def few_rows(n_rows: int, device) -> bool:
    """One latency-bound wave of a row kernel: up to FEW_ROWS_PER_SM rows per SM."""
    return n_rows <= FEW_ROWS_PER_SM * sm_count(device)


def row_grid(cfg: RowConfig, n_rows: int, device) -> int:
    """Programs to launch for ``n_rows`` rows under ``cfg``."""
    n_tiles = cdiv(n_rows, cfg.block_r)
    if cfg.persistent:
        return min(n_tiles, cfg.persistent * sm_count(device))
    return n_tiles


def capturing(device) -> bool:
    """True while the current stream of ``device`` records a CUDA graph."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


class SplitCounters:
    """int32 arrival counters of a deterministic split-K kernel (one per output tile).

    The kernel leaves its counters at zero (the last program to arrive at a tile resets
    its counter), so:

    * eager calls share one zeroed buffer per (device, stream);
    * a call captured into a CUDA graph takes counters of its own from a per-device
      pool zeroed before capture and never handed out again: they are zero when the
      graph first replays and after every replay, whatever runs meanwhile, and nothing
      is zeroed inside the graph (measured on H200: a zeroing node in the graph costs
      about 1.1 us per split-K call). Eager calls keep the pool topped up; a capture
      that finds it short zeroes a buffer of its own inside the graph.
    """

    POOL = 1 << 18  # counters per pool (1 MiB)
    ALIGN = 32  # graph counters handed out in multiples of 32 (128-byte aligned)

    def __init__(self, min_count: int = 1024):
        self._min_count = min_count
        self._buffers = {}  # (device, stream) -> eager buffer
        self._pools = {}  # device -> (pool, first free counter)
        self._kept = []  # every pool made: captured graphs point into them
        self._lock = threading.Lock()

    def get(self, device, count):
        if device.type == "cuda" and device.index is None:  # "cuda" is "cuda:<current>"
            device = torch.device("cuda", torch.cuda.current_device())
        with self._lock:
            if capturing(device):
                return self._take(device, count)
            self._top_up(device)
            stream = torch.cuda.current_stream(device).stream_id if device.type == "cuda" else 0
            buf = self._buffers.get((device, stream))
            if buf is None or buf.numel() < count:
                buf = torch.zeros(max(count, self._min_count), dtype=torch.int32, device=device)
                self._buffers[(device, stream)] = buf
            return buf

    def _top_up(self, device):
        pool, free = self._pools.get(device, (None, 0))
        if pool is None or pool.numel() - free < self.POOL // 2:
            pool = torch.zeros(self.POOL, dtype=torch.int32, device=device)
            self._kept.append(pool)
            self._pools[device] = (pool, 0)

    def _take(self, device, count):
        count = cdiv(count, self.ALIGN) * self.ALIGN
        pool, free = self._pools.get(device, (None, 0))
        if pool is None or free + count > pool.numel():
            return torch.zeros(count, dtype=torch.int32, device=device)
        self._pools[device] = (pool, free + count)
        return pool[free:free + count]


def check_rows_even_dim(t, name):
    """``t`` is (rows, dim) with rows > 0 and an even dim > 0 (bf16 pair kernels)."""
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise RuntimeError(f"{name} must have shape (rows, dim) with rows > 0 and dim > 0, "
                           f"got {tuple(t.shape)}")
    if t.shape[1] % 2 != 0:
        raise RuntimeError(f"{name}.shape[1] must be even, got {t.shape[1]}")


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def uses_pdl(device) -> bool:
    """Programmatic dependent launch for the decode GEMMs (Hopper and newer CUDA devices,
    compiled kernels): a kernel launches while the previous one still runs, prefetches
    its weight into L2 and only then waits for it (griddepcontrol.wait)."""
    return (device.type == "cuda" and not interpreting()
            and getattr(torch.version, "hip", None) is None
            and torch.cuda.get_device_capability(device)[0] >= 9)


def dependent_launch(device) -> dict:
    """Launch options of a kernel that starts with ``enter_dependent_launch(PDL)``:
    programmatic dependent launch where ``uses_pdl`` (the constexpr and the launch flag
    always together: a kernel launched early must wait), nothing else elsewhere. Its
    launch then overlaps the kernel before it, in a stream or a CUDA graph."""
    return {"PDL": True, "launch_pdl": True} if uses_pdl(device) else {"PDL": False}


def check_tensor(t, name, dtype, *, contiguous=True):
    """Type, device, dtype and contiguity of one tensor argument."""
    if not isinstance(t, torch.Tensor):
        raise RuntimeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cuda" and not (t.device.type == "cpu" and interpreting()):
        raise RuntimeError(
            f"{name} must be a CUDA tensor (got {t.device}; CPU tensors run only "
            "under the Triton interpreter, TRITON_INTERPRET=1)"
        )
    if t.dtype != dtype:
        raise RuntimeError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if contiguous and not t.is_contiguous():
        raise RuntimeError(f"{name} must be contiguous")


def check_same_device(named):
    """``named``: sequence of (name, tensor); all must share the first one's device."""
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise RuntimeError(
                f"{first_name} and {name} must be on the same CUDA device "
                f"(got {first.device} and {t.device})"
            )


def check_shape(t, name, shape, what=None):
    if tuple(t.shape) != tuple(shape):
        msg = what or f"{name} must have shape {tuple(shape)}"
        raise RuntimeError(f"{msg}, got {tuple(t.shape)}")


def check_matrix(t, name, dtype):
    """A non-empty 2-D tensor of ``dtype``."""
    check_tensor(t, name, dtype)
    if t.dim() != 2:
        raise RuntimeError(f"{name} must be 2-D, got {t.dim()} dimensions")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise RuntimeError(f"{name} dimensions must be non-zero, got {tuple(t.shape)}")


def check_scale(t, name):
    """A one-element fp32 tensor (a static scale)."""
    check_tensor(t, name, torch.float32)
    if t.numel() != 1:
        raise RuntimeError(f"{name} must contain exactly one value, got {t.numel()}")


def check_bias(b, name, n, what, dtype=torch.bfloat16):
    """A 1-D tensor of length ``n`` (``what`` says which dimension it must match)."""
    check_tensor(b, name, dtype)
    if b.dim() != 1 or b.shape[0] != n:
        raise RuntimeError(f"{name} length must match {what}, got shape {tuple(b.shape)} "
                           f"for {n}")


def check_out(t, name, dtype, shape, what):
    """An output buffer: ``dtype``, contiguous, exactly ``shape`` (``what`` states it)."""
    check_tensor(t, name, dtype)
    check_shape(t, name, shape, what)


def same_device(*named):
    """check_same_device over (name, tensor) pairs, skipping tensors that are None."""
    check_same_device([(n, t) for n, t in named if t is not None])


def check_int(value, name, *, minimum=0, maximum=_INT32_MAX):
    if isinstance(value, bool) or not isinstance(value, int):
        # SymInts (torch.compile) pass through: the fake/real op re-checks sizes.
        if isinstance(value, torch.SymInt):
            return
        raise RuntimeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum or value > maximum:
        raise RuntimeError(f"{name} must be in [{minimum}, {maximum}], got {value}")


def device_guard(t):
    """Launch on ``t``'s device (Triton uses the current device's current stream)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------
# Exact float conversions for the Triton interpreter.
#
# Triton's interpreter (3.6 to at least 3.9) converts floats with its own bit
# arithmetic, which rounds fp32->fp8e4nv half-up without carrying a mantissa
# overflow into the exponent (124.14 -> 64 instead of 128) and truncates
# fp32->bf16. The GPU rounds to nearest even (and saturates fp8, `satfinite`).
# We replace the conversion by torch's own, which is RNE, and saturate finite
# fp8 values to match the hardware. Installed on import whenever the
# interpreter is active, so CPU results carry GPU rounding.
# --------------------------------------------------------------------------

_FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}


def _triton_to_torch_float_types():
    import triton.language as tl

    return {
        tl.float64: torch.float64,
        tl.float32: torch.float32,
        tl.float16: torch.float16,
        tl.bfloat16: torch.bfloat16,
        tl.float8e4nv: torch.float8_e4m3fn,
        tl.float8e5: torch.float8_e5m2,
    }


def install_exact_interpreter_casts():
    """Patch the interpreter's float conversion with torch's exact RNE casts.

    Idempotent. Returns True when the patch is (now) installed.
    """
    from triton.runtime import interpreter as interp

    current = interp._convert_float
    if getattr(current, "_flashrt_exact", False):
        return True
    inexact = current
    types = _triton_to_torch_float_types()
    rtne = interp._ir.ROUNDING_MODE.RTNE

    def exact_convert_float(input, input_dtype, output_dtype, rounding_mode):
        src = types.get(input_dtype)
        dst = types.get(output_dtype)
        if src is None or dst is None or rounding_mode not in (None, rtne) or input.size == 0:
            return inexact(input, input_dtype, output_dtype, rounding_mode)
        in_bits = input_dtype.primitive_bitwidth
        out_bits = output_dtype.primitive_bitwidth
        raw = bytearray(input.tobytes())  # the interpreter holds floats as numpy bits
        x = torch.frombuffer(raw, dtype=getattr(torch, f"int{in_bits}")).view(src)
        limit = _FP8_MAX.get(dst)
        if limit is not None:
            x = x.to(torch.float64 if src == torch.float64 else torch.float32)
            x = torch.where(torch.isnan(x), x, x.clamp(-limit, limit))
        y = x.to(dst).view(getattr(torch, f"int{out_bits}"))
        return y.numpy().view(f"uint{out_bits}").reshape(input.shape)

    exact_convert_float._flashrt_exact = True
    interp._convert_float = exact_convert_float
    return True


def install_interpreter_nan_min_max():
    """Give the interpreter the GPU's NaN rule for ``tl.minimum`` / ``tl.maximum``.

    With the default ``propagate_nan`` they lower to minnumf / maxnumf: on the GPU
    (fminf / fmaxf) a NaN operand is dropped, but Triton 3.6's interpreter maps them to
    ``np.minimum`` / ``np.maximum``, which propagate it. Patched to ``np.fmin`` /
    ``np.fmax``. Idempotent; returns True when installed.
    """
    from triton.runtime import interpreter as interp

    np = interp.np  # the interpreter's own numpy (packages do not import numpy themselves)
    builder = interp.InterpreterBuilder
    if not getattr(builder, "_flashrt_nan_min_max", False):
        builder.create_minnumf = lambda self, lhs, rhs: self.binary_op(lhs, rhs, np.fmin)
        builder.create_maxnumf = lambda self, lhs, rhs: self.binary_op(lhs, rhs, np.fmax)
        builder._flashrt_nan_min_max = True
    return True


def install_interpreter_bf16_dot():
    """Make the interpreter's ``tl.dot`` multiply bf16 tiles as numbers.

    Triton 3.6 widens only 8-bit float operands; bf16 tiles, held as uint16 bits, go
    to ``np.matmul`` as integers. bf16 operands are widened to fp32 first (exact: every
    bf16 product fits fp32), as the GPU's bf16 MMA with fp32 accumulation computes.
    Idempotent; returns True when installed.
    """
    import triton.language as tl
    from triton.runtime import interpreter as interp

    builder = interp.InterpreterBuilder
    if getattr(builder, "_flashrt_bf16_dot", False):
        return True
    dot = builder.create_dot

    def widen(t):
        if t.dtype != tl.bfloat16:
            return t
        data = interp._convert_float(t.data, tl.bfloat16, tl.float32, None)
        return interp.TensorHandle(data.view(interp.np.float32), tl.float32)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        return dot(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    builder.create_dot = create_dot
    builder._flashrt_bf16_dot = True
    return True


def install_interpreter_fixes():
    """Exact float casts, GPU NaN min/max and numeric bf16 dots in Triton's interpreter."""
    return (install_exact_interpreter_casts() and install_interpreter_nan_min_max()
            and install_interpreter_bf16_dot())


if interpreting():
    install_interpreter_fixes()


def launch_directly(t) -> bool:
    """True when a wrapper may launch its kernel itself instead of calling its op.

    Going through the registered custom op costs 50-80 us of host time per call
    (measured on the H100 host with torch 2.11; the Triton launch itself costs
    about 30 us). Eager callers skip it; under torch.compile / export tracing,
    or with fake or subclassed tensors, the op is called so it is traced.
    """
    return type(t) is torch.Tensor and not torch.compiler.is_compiling()
