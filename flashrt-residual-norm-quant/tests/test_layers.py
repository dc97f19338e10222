"""Kernelize layers of flashrt-residual-norm-quant: RMSNorm (transformers Llama/Qwen2
hosts) and LayerNorm (torch.nn.LayerNorm hosts).

The layers are exercised on their own (any leading shape, dtype fallback) and inside
small transformers models built from a config (random init, nothing downloaded),
kernelized through `kernels` from the package folder in both inference modes.
"""

import copy

import pytest
import torch

from flashrt_tools.repo import ROOT
from flashrt_tools.tolerance import compare
from flashrt_tools.validation import reference_of

transformers = pytest.importorskip("transformers", reason="the model tests need transformers")
from kernels import LocalLayerRepository, Mode, kernelize, use_kernel_mapping  # noqa: E402

PKG_ROOT = ROOT / "flashrt-residual-norm-quant"


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(shape, seed, scale=1.0, shift=0.0):
    return torch.randn(shape, generator=_gen(seed)) * scale + shift


def _llama_norm(dim, device, dtype, eps=1e-6):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    host = LlamaRMSNorm(dim, eps=eps)
    with torch.no_grad():
        host.weight.copy_(_randn((dim,), 1, 0.1, 1.0))
    return host.to(device=device, dtype=dtype).eval()


@pytest.mark.parametrize("shape", [(7, 64), (2, 3, 130), (1, 1, 1, 8200)], ids=str)
def test_rmsnorm_layer_any_leading_shape(kernel, device, shape):
    host = _llama_norm(shape[-1], device, torch.bfloat16, eps=1e-5)
    x = _randn(shape, 2, 2.0).to(device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        got = kernel.layers.RMSNorm.forward(host, x)
        hf = host(x)  # the host's own forward (weight · bf16(x̂))
    assert got.shape == x.shape and got.dtype == torch.bfloat16
    want = reference_of(kernel).rms_norm_bf16(x.reshape(-1, shape[-1]), host.weight, 1e-5)
    v = compare("bf16", got.reshape(-1, shape[-1]), want)
    assert v.ok, v.message
    # transformers rounds x̂ to bf16 before the weight: at most one more rounding step away
    v = compare("bf16", got, hf, ulps=2)
    assert v.ok, v.message


def test_rmsnorm_layer_non_contiguous_input(kernel, device):
    host = _llama_norm(64, device, torch.bfloat16)
    x = _randn((5, 128), 3).to(device=device, dtype=torch.bfloat16)[:, ::2]
    with torch.no_grad():
        got = kernel.layers.RMSNorm.forward(host, x)
    want = reference_of(kernel).rms_norm_bf16(x.contiguous(), host.weight)
    assert compare("bf16", got, want).ok


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rmsnorm_layer_falls_back_for_other_dtypes(kernel, device, dtype):
    """Policy: bf16 runs the kernel; an fp32 / fp16 host runs the host's own math, bit for bit."""
    host = _llama_norm(96, device, dtype)
    x = _randn((4, 3, 96), 4, 2.0).to(device=device, dtype=dtype)
    with torch.no_grad():
        got = kernel.layers.RMSNorm.forward(host, x)
        want = host(x)
    assert got.dtype == want.dtype and torch.equal(got, want)


def test_rmsnorm_layer_falls_back_for_fp32_weight(kernel, device):
    host = _llama_norm(64, device, torch.float32)  # weight fp32, activations bf16
    x = _randn((3, 64), 5).to(device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(kernel.layers.RMSNorm.forward(host, x), host(x))


@pytest.mark.parametrize("shape", [(5, 64), (2, 4, 1152)], ids=str)
def test_layernorm_layer(kernel, device, shape):
    dim = shape[-1]
    host = torch.nn.LayerNorm(dim, eps=1e-6)
    with torch.no_grad():
        host.weight.copy_(_randn((dim,), 6, 0.1, 1.0))
        host.bias.copy_(_randn((dim,), 7, 0.1))
    host = host.to(device=device, dtype=torch.bfloat16).eval()
    x = _randn(shape, 8, 2.0).to(device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        got = kernel.layers.LayerNorm.forward(host, x)
    want = reference_of(kernel).layer_norm_bf16(x.reshape(-1, dim), host.weight, host.bias, 1e-6)
    v = compare("bf16", got.reshape(-1, dim), want)
    assert v.ok, v.message
    host32 = host.float()  # fp32 host: torch's own layer_norm
    with torch.no_grad():
        assert torch.equal(kernel.layers.LayerNorm.forward(host32, x.float()), host32(x.float()))


def test_layers_are_valid_kernelize_layers(kernel):
    """No __init__, only can_torch_compile / has_backward beyond nn.Module (kernels rule)."""
    for cls in (kernel.layers.RMSNorm, kernel.layers.LayerNorm):
        assert cls.__init__ is torch.nn.Module.__init__
        extra = set(vars(cls)) - set(vars(torch.nn.Module)) - {
            "__module__", "__doc__", "__qualname__", "forward", "__firstlineno__",
            "__static_attributes__"}
        assert extra <= {"can_torch_compile", "has_backward"}, extra
        assert cls.can_torch_compile is True and cls.has_backward is False


# --- small transformers models, kernelized -------------------------------------------------------


def _tiny_model(family, device):
    cfg_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[family]
    cfg = cfg_cls(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = model_cls(cfg).eval()
    for cls in {type(m) for m in _rms_norms(model)}:
        _mark_hub_layer(cls)
    with torch.no_grad():  # random norm weights (the default init is all ones)
        for i, m in enumerate(_rms_norms(model)):
            m.weight.copy_(_randn(m.weight.shape, 100 + i, 0.1, 1.0))
    return model.to(device)


def _mark_hub_layer(cls, name="RMSNorm"):
    """transformers tags its RMSNorm classes with ``kernel_layer_name = "RMSNorm"`` only when
    the installed `kernels` is inside the version window it supports (5.x: >= 0.18.2);
    with another `kernels` its decorator is a no-op. Tag the class with `kernels`' own
    decorator then (what the transformers decorator does)."""
    from kernels import use_kernel_forward_from_hub

    if getattr(cls, "kernel_layer_name", None) is None:
        use_kernel_forward_from_hub(name)(cls)
    assert cls.kernel_layer_name == name


def _rms_norms(model):
    return [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]


def _kernelize(model, device, mode):
    repo = LocalLayerRepository(repo_path=PKG_ROOT, layer_name="RMSNorm")
    with use_kernel_mapping({"RMSNorm": {device.type: repo}}, inherit_mapping=False):
        return kernelize(model, mode=mode, device=device.type, use_fallback=False)


@pytest.mark.parametrize("mode", ["inference", "inference+compile"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_kernelize_tiny_model(kernel, device, family, mode):
    """Every RMSNorm forward is replaced by the package's layer, and the kernelized bf16
    model is as accurate as the original bf16 model (both against the fp32 model)."""
    modes = {"inference": Mode.INFERENCE, "inference+compile": Mode.INFERENCE | Mode.TORCH_COMPILE}
    model32 = _tiny_model(family, device)
    original = copy.deepcopy(model32).to(torch.bfloat16)
    kernelized = _kernelize(copy.deepcopy(original), device, modes[mode])
    norms = _rms_norms(kernelized)
    assert len(norms) == 2 * 2 + 1
    for m in norms:
        assert m.forward.__func__ is kernel.layers.RMSNorm.forward, m
    ids = torch.randint(0, 256, (2, 9), generator=_gen(1)).to(device)
    with torch.no_grad():
        ref32 = model32(ids).logits.float()
        base = original(ids).logits.float()
        got = kernelized(ids).logits.float()
        if mode == "inference+compile":
            backend = "inductor" if device.type == "cuda" else "aot_eager"
            compiled = torch.compile(kernelized, backend=backend)
            got_c = compiled(ids).logits.float()
            assert torch.equal(got_c, got) or device.type == "cuda"
            if device.type == "cuda":  # Inductor fuses the non-norm parts differently
                got = got_c
    assert not torch.equal(got, base) or device.type == "cuda"  # the kernel really ran
    err, err_base = (got - ref32).abs(), (base - ref32).abs()
    cos = torch.nn.functional.cosine_similarity(got.flatten(), base.flatten(), dim=0)
    assert cos > 0.999, cos
    # as accurate as transformers' own bf16 model, up to noise of the same size
    assert err.mean() <= 1.25 * err_base.mean(), (err.mean(), err_base.mean())
    assert err.max() <= 2.0 * err_base.max(), (err.max(), err_base.max())


def test_kernelize_training_mode_keeps_host_forward(kernel, device):
    """has_backward = False: Mode.TRAINING keeps the original forward (with fallback)."""
    model = _tiny_model("llama", device).to(torch.bfloat16)
    repo = LocalLayerRepository(repo_path=PKG_ROOT, layer_name="RMSNorm")
    with use_kernel_mapping({"RMSNorm": {device.type: repo}}, inherit_mapping=False):
        kernelize(model, mode=Mode.TRAINING, device=device.type)
    for m in _rms_norms(model):
        assert m.forward.__func__ is not kernel.layers.RMSNorm.forward
