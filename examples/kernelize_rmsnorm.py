"""Kernelize a transformers model's RMSNorm layers with flashrt-residual-norm-quant.

Builds a small Llama model from a config (random weights, nothing downloaded), swaps
every ``LlamaRMSNorm.forward`` for the package's ``layers.RMSNorm`` through
``kernels.kernelize``, and compares logits (and, on a GPU, time per forward) with
the original model.

    python examples/kernelize_rmsnorm.py             # GPU: hidden 2048, 4 layers, 512 tokens
    python examples/kernelize_rmsnorm.py --tokens 8  # any machine

Without a GPU the Triton kernels run in Triton's interpreter (slow but exact), so
the default model shrinks there.
"""

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import transformers  # noqa: E402
from kernels import (LocalLayerRepository, Mode, get_local_kernel, kernelize,  # noqa: E402
                     use_kernel_forward_from_hub, use_kernel_mapping)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from flashrt_tools.build import build  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402


def _time_ms(fn, device, reps=20):
    if device.type != "cuda":
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


def main():
    on_gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=2048 if on_gpu else 64)
    p.add_argument("--layers", type=int, default=4 if on_gpu else 2)
    p.add_argument("--tokens", type=int, default=512 if on_gpu else 8)
    p.add_argument("--compile", action="store_true", help="kernelize for torch.compile and compile")
    args = p.parse_args()
    device = torch.device("cuda" if on_gpu else "cpu")

    pkg = Package("flashrt-residual-norm-quant")
    build(pkg, log=lambda *_: None)  # build/torch-<backend>/, the kernels layout
    ops = get_local_kernel(pkg.root)  # or get_kernel("flashrt/flashrt-residual-norm-quant", version=1)

    cfg = transformers.LlamaConfig(
        vocab_size=1024, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 128),
        num_key_value_heads=max(1, args.hidden // 512), max_position_embeddings=4096)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval().to(device=device, dtype=torch.bfloat16)
    norm_cls = transformers.models.llama.modeling_llama.LlamaRMSNorm
    if getattr(norm_cls, "kernel_layer_name", None) is None:
        # transformers tags its RMSNorm only for the `kernels` versions it supports
        use_kernel_forward_from_hub("RMSNorm")(norm_cls)
    kernelized = copy.deepcopy(model)
    mode = Mode.INFERENCE | (Mode.TORCH_COMPILE if args.compile else Mode.INFERENCE)
    repo = LocalLayerRepository(repo_path=pkg.root, layer_name="RMSNorm")
    with use_kernel_mapping({"RMSNorm": {device.type: repo}}, inherit_mapping=False):
        kernelize(kernelized, mode=mode, device=device.type, use_fallback=False)
    replaced = sum(m.forward.__func__ is ops.layers.RMSNorm.forward
                   for m in kernelized.modules() if isinstance(m, norm_cls))
    print(f"RMSNorm layers kernelized: {replaced}")
    if args.compile:
        model, kernelized = torch.compile(model), torch.compile(kernelized)

    ids = torch.randint(0, cfg.vocab_size, (1, args.tokens), device=device)
    with torch.no_grad():
        want = model(ids).logits.float()
        got = kernelized(ids).logits.float()
        cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
        print(f"logits: max |diff| {(got - want).abs().max().item():.4f}, cosine {cos.item():.6f}")
        assert replaced > 0, "no RMSNorm layer was kernelized"
        assert cos.item() > 0.9999, "kernelized logits diverge from the original model"
        t_ref = _time_ms(lambda: model(ids), device)
        t_ker = _time_ms(lambda: kernelized(ids), device)
    what = "ms per forward" if on_gpu else "ms (one call, Triton interpreter: not a speed number)"
    print(f"original {t_ref:.3f} / kernelized {t_ker:.3f} {what}")


if __name__ == "__main__":
    main()
