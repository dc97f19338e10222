"""Layer-stack rows of the FP8 FFN benchmarks (flashrt-fp8-ffn, flashrt-fp8-swiglu-ffn).

A stack is ``n`` FFN layers with distinct weights, timed as one unit (CUDA-graph
replay of all layers back to back, the way a model runs them). Each layer reads
its own calibrated BF16 input rather than the previous layer's output:

* on one stream the GPU time is the same either way (kernels run in order), and
* verification stays meaningful. Chained static-FP8 layers amplify last-ulp
  differences (one bf16 ulp in 2% of a stack's input moves the eager reference's
  own output to cosine 0.985 after 12 layers), so two correct implementations
  disagree at the end of a deep chain; chained SwiGLU stacks without residuals or
  norms also grow heavy-tailed activations whose per-tensor FP8 scale flushes most
  values to zero. Per layer, on the layer's own input, every path is held to the
  benchmark tolerance.

Every timed path (ours, the library composition eager and compiled, the compiled
reference) is verified layer by layer against the eager fake-quant reference
before it is timed; a path that fails is reported, not timed.
"""

from typing import Callable, Sequence

import torch

from ..tolerance import compare
from .harness import finish_row, graph_us, host_loop_us

STACK_GRAPH_CALLS = 4  # stacks per captured graph (each is already hundreds of launches)


def _first_failure(layer_fn, reference_fn, inputs, tol):
    """None if ``layer_fn`` matches ``reference_fn`` on every layer's input, else a message."""
    for i, x in enumerate(inputs):
        v = compare("gemm", layer_fn(i, x), reference_fn(i, x), **tol)
        if not v.ok:
            return f"layer {i}: {v.message}"
    return None


def _compiled(layer_fn, layers, inputs, reference_fn, tol):
    """(torch.compile(layer_fn) verified per layer, status) as an ``(i, x)`` callable.

    ``layer_fn(x, L)`` takes the layer's tensors as a dict, so one compiled graph
    serves every layer (tensor arguments, not constants). Plain Inductor first, then
    with emulate_precision_casts (Inductor may drop an intermediate bf16 rounding)."""
    import torch._inductor.config as inductor_config

    failure = None
    for emulate in (False, True):
        torch._dynamo.reset()
        compiled = torch.compile(layer_fn, dynamic=False)

        def call(i, x, compiled=compiled, emulate=emulate):
            with inductor_config.patch(emulate_precision_casts=emulate):
                return compiled(x, layers[i])
        try:
            failure = _first_failure(call, reference_fn, inputs, tol)
        except Exception as e:  # a baseline that does not compile is reported
            return None, f"unsupported: {type(e).__name__}: {str(e)[:120]}"
        if failure is None:
            return call, "verified per layer" + (" (emulate_precision_casts=True)" if emulate
                                                 else "")
    return None, f"unsupported: output differs from eager: {failure}"


def measure_stack(*, op: str, shape: str, model: str, layers: Sequence[dict],
                  inputs: Sequence[torch.Tensor], ours: Callable, reference_layer: Callable,
                  library_layer: Callable, nbytes: int, weight_bytes: int, flops: int,
                  copy_gbps: float, tol: dict, log=print) -> dict:
    """One stack row. ``ours(i, x)`` runs layer ``i`` on input ``x``;
    ``reference_layer(x, L)`` / ``library_layer(x, L)`` take the layer's dict ``L``
    (the eager fake-quant reference; the torch._scaled_mm composition). ``tol``:
    keyword arguments of the "gemm" comparator."""

    def reference(i, x):
        return reference_layer(x, layers[i])

    def library(i, x):
        return library_layer(x, layers[i])

    row = {"op": op, "shape": shape, "model": model, "bytes": nbytes, "flops": flops,
           "verification": "per layer, each on its own calibrated input"}
    failure = _first_failure(ours, reference, inputs, tol)
    if failure:
        row.update(label="reject", note=failure)
        log(f"  REJECT {op} {shape}: {failure}")
        return row
    row["max_abs_err"] = max(float((ours(i, x).float() - reference(i, x).float()).abs().max())
                             for i, x in enumerate(inputs))

    def stack(layer_fn):
        def run(_):
            return [layer_fn(i, x) for i, x in enumerate(inputs)]
        return run

    compiled, row["compile_status"] = _compiled(reference_layer, layers, inputs, reference, tol)
    lib_compiled, row["library_status"] = _compiled(library_layer, layers, inputs, reference,
                                                    tol)
    lib_eager_failure = _first_failure(library, reference, inputs, tol)
    sets = [0]
    row["ours_us"] = graph_us(stack(ours), sets, STACK_GRAPH_CALLS)
    row["eager_us"] = graph_us(stack(reference), sets, STACK_GRAPH_CALLS)
    row["compile_us"] = graph_us(stack(compiled), sets, STACK_GRAPH_CALLS) if compiled else None
    row["library_us"] = (graph_us(stack(lib_compiled), sets, STACK_GRAPH_CALLS)
                         if lib_compiled else None)
    row["library_eager_us"] = (None if lib_eager_failure
                               else graph_us(stack(library), sets, STACK_GRAPH_CALLS))
    row["ours_host_us"] = host_loop_us(stack(ours), sets)
    row["library_host_us"] = host_loop_us(stack(lib_compiled), sets) if lib_compiled else None
    row["input_sets"] = 1
    row["weight_floor_us"] = weight_bytes / (copy_gbps * 1e3)
    finish_row(row, copy_gbps)
    lib = f"{row['library_us']:.1f}" if row["library_us"] else "n/a"
    log(f"  {op:28s} {shape:34s} ours {row['ours_us']:9.1f} us  eager {row['eager_us']:9.1f}  "
        f"compiled library {lib:>9s}  weight floor {row['weight_floor_us']:.1f}  {row['label']}")
    return row
