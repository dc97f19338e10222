"""flashrt-fp8-swiglu-ffn on model shapes: FP8 GEMM vs torch._scaled_mm, gated-FFN layer stacks.

Grid:
* fp8_gemm_bf16 alone (the same kernel as flashrt-fp8-ffn) at the merged gate/up
  widths: PI0.5 decoder (K 1024 -> 2H 8192) and PI0.5 GeGLU (K 2048 -> 2H 32768),
  M in {1, 8, 16, 64, 128, 512, 1024, 4096}; library = torch._scaled_mm.
* bf16_fp8_{geglu,swiglu}_mlp_bf16 layer stacks, distinct weights per layer, each
  layer on its own calibrated BF16 input (flashrt_tools/bench/fp8_ffn.py says why):
  PI0.5 decoder GeGLU (10, 1024->4096->1024) x 18,
  PI0.5 encoder GeGLU (560, 2048->16384->2048) x 4 (4 of 18 layers: 100 MB of FP8
  weights each, the eager fp32 baseline takes ~3 ms per layer), GROOT action DiT
  SwiGLU (41, 1536->6144->1536) x 32, SigLIP-shaped SwiGLU (512, 1152->4304->1152) x 27.
  Baselines: eager fake-quant (fp32), torch.compile of one layer of it (verified,
  reused by every layer), the library composition (torch._scaled_mm + PyTorch
  act*up/quantize) eager (``library_eager_us``) and compiled per layer (``library_us``).

Byte model: weights once + activations; FLOPs 2*M*N*K per GEMM. Verification bound
and method: flashrt_tools/bench/fp8_ffn.py (shared with flashrt-fp8-ffn).

Run: ``flashrt bench fp8-swiglu-ffn`` on a GPU.
"""

import functools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.fp8_ffn import (BENCH_TOL, BF16, FP8, GEMM_M, eager_gemm,  # noqa: E402
                                         fp8_weight, gemm_rows, measure_stack, q8,
                                         scaled_mm, scaled_mm_needs_pad,
                                         target_notes)  # target_notes: read by `flashrt bench`

GEMM_KN = {"pi05_decoder gate_up": (1024, 8192), "pi05_geglu gate_up": (2048, 32768)}
STACKS = [("PI0.5 decoder GeGLU", "geglu", 10, 1024, 4096, 1024, 18),
          ("PI0.5 encoder GeGLU", "geglu", 560, 2048, 16384, 2048, 4),
          ("GROOT action DiT SwiGLU", "swiglu", 41, 1536, 6144, 1536, 32),
          ("SigLIP-shaped SwiGLU", "swiglu", 512, 1152, 4304, 1152, 27)]


def _layer_weights(K, H, N, gen):
    gu, sg = fp8_weight(2 * H, K, gen)
    down, sd = fp8_weight(N, H, gen)
    return {"gate_up_weight": gu, "down_weight": down, "gate_up_weight_scale": sg,
            "down_weight_scale": sd}


def _act(g, act):
    g = g.float()
    return g / (1.0 + torch.exp(-g)) if act == "swiglu" else F.gelu(g, approximate="tanh")


def _act_mul(gu, act):
    H = gu.shape[1] // 2
    return _act(gu[:, :H], act) * gu[:, H:].float()


def _eager_layer(x, L, act):
    """The spec's math, eager fake-quant in fp32."""
    xq = q8(x, L["input_scale"])
    gu = eager_gemm(xq, L["gate_up_weight"], L["input_scale"], L["gate_up_weight_scale"])
    hq = q8(_act_mul(gu, act), L["hidden_scale"])
    return eager_gemm(hq, L["down_weight"], L["hidden_scale"], L["down_weight_scale"])


def _library_layer(x, L, act):
    """What a user writes from cuBLASLt: _scaled_mm GEMMs + PyTorch act*up/quantize."""
    xq = q8(x, L["input_scale"])
    gu = scaled_mm(xq, L["gate_up_weight"], L["input_scale"], L["gate_up_weight_scale"])
    hq = q8(_act_mul(gu, act), L["hidden_scale"])
    return scaled_mm(hq, L["down_weight"], L["hidden_scale"], L["down_weight_scale"])


def _stack_rows(ctx):
    rows = []
    stacks = STACKS[:1] + STACKS[2:3] if ctx.quick else STACKS
    for model, act, M, K, H, N, n_layers in stacks:
        g = torch.Generator(device="cuda").manual_seed(0)
        layers = [_layer_weights(K, H, N, g) for _ in range(n_layers)]
        inputs = [torch.randn((M, K), generator=g, device="cuda").to(BF16) for _ in layers]
        for L, x in zip(layers, inputs):  # static calibration on the layer's own input
            L["input_scale"] = (x.float().abs().amax() / (0.9 * 448)).reshape(1)
            gu = eager_gemm(q8(x, L["input_scale"]), L["gate_up_weight"], L["input_scale"],
                             L["gate_up_weight_scale"])
            L["hidden_scale"] = (_act_mul(gu, act).abs().amax() / (0.9 * 448)).reshape(1)
        bufs = [(torch.empty(M, K, dtype=FP8, device="cuda"),
                 torch.empty(M, 2 * H, dtype=BF16, device="cuda"),
                 torch.empty(M, H, dtype=FP8, device="cuda"),
                 torch.empty(M, N, dtype=BF16, device="cuda")) for _ in layers]
        fn = getattr(ctx.kernel, f"bf16_fp8_{act}_mlp_bf16")

        def ours(i, x, fn=fn):
            L = layers[i]
            return fn(x, L["gate_up_weight"], L["down_weight"], L["input_scale"],
                      L["gate_up_weight_scale"], L["hidden_scale"], L["down_weight_scale"],
                      *bufs[i])

        wbytes = n_layers * (2 * H * K + N * H)
        row = measure_stack(
            op=f"bf16_fp8_{act}_mlp_bf16 stack", shape=f"M={M},K={K},H={H},N={N},layers={n_layers}",
            model=model, layers=layers, inputs=inputs, ours=ours,
            reference_layer=functools.partial(_eager_layer, act=act),
            library_layer=functools.partial(_library_layer, act=act),
            nbytes=wbytes + n_layers * M * (2 * K + 2 * N), weight_bytes=wbytes,
            flops=n_layers * 2 * M * (K * 2 * H + H * N), copy_gbps=ctx.copy_gbps,
            tol=BENCH_TOL["gemm"], log=ctx.log)
        row["library_note"] = ("library_us: torch.compile(per layer) of torch._scaled_mm + "
                               "act*up/quantize; library_eager_us: the same eager")
        rows.append(row)
        torch.cuda.empty_cache()
    return rows


def benchmark(ctx):
    torch.backends.cuda.matmul.allow_tf32 = False
    pad = scaled_mm_needs_pad()
    grid = [(name, M, K, N) for name, (K, N) in GEMM_KN.items() for M in GEMM_M]
    return gemm_rows(ctx, grid, pad) + _stack_rows(ctx)


if __name__ == "__main__":
    from flashrt_tools.bench.run import bench

    sys.exit(bench(["flashrt-fp8-swiglu-ffn"], quick="--quick" in sys.argv))
