"""Loading built packages through `kernels`, and accuracy cases against reference.py.

A package's ``tests/cases.py`` lists ``Case`` objects (every public function, a
few shapes each). The same cases feed pytest, `flashrt validate` and the
benchmarks' correctness gate, so "verified" means one thing everywhere.
"""

import dataclasses
import importlib
import os
import re
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from .repo import Package, load_file
from .tolerance import Verdict, compare


@dataclasses.dataclass
class Case:
    function: str  # public name; reference.py has the same name and signature minus outputs
    label: str  # readable shape id, e.g. "T=64,H=24"
    make: Callable[[torch.device, torch.Generator], Tuple[tuple, dict]]  # -> (args, kwargs)
    formats: Sequence[str]  # one comparison format per returned output ("bf16", "exact", ...)
    compare_kwargs: Dict[str, dict] = dataclasses.field(default_factory=dict)  # per format
    # Optional: the expected outputs given the kernel's own outputs, for an output
    # computed from an earlier rounded output of the same call (an FP8 epilogue on a
    # BF16 GEMM result). Comparing it with the reference's chain would count the
    # GEMM's last-ulp differences, amplified by the epilogue, as epilogue errors.
    # Signature: expected(reference, got, args, kwargs) -> tuple of outputs.
    expected: Optional[Callable] = None
    # True for an in-place function: the kernel and the reference each get their own
    # copy of the tensor arguments, so the reference sees the original data.
    mutates: bool = False

    @property
    def id(self) -> str:
        return f"{self.function}[{self.label}]"


def device_for_run() -> torch.device:
    """The GPU when there is one, else the CPU (kernels then run in the interpreter)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def ensure_interpreter_if_cpu():
    """On a machine without a GPU, run Triton through its interpreter with exact casts.

    Must run before triton is imported anywhere (triton.jit reads the variable).
    """
    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
    return os.environ.get("TRITON_INTERPRET") == "1"


_LOADED: Dict[str, object] = {}


def load_built(pkg: Package, *, rebuild: bool = True, log=lambda *_: None):
    """Build ``pkg`` (fresh) and load it through ``kernels.get_local_kernel``."""
    if pkg.name in _LOADED:
        return _LOADED[pkg.name]
    from kernels import get_local_kernel

    from .build import build

    if rebuild:
        build(pkg, log=log)
    module = get_local_kernel(pkg.root)
    _LOADED[pkg.name] = module
    return module


def reference_of(kernel_module):
    """The reference.py shipped inside a loaded kernel module."""
    return importlib.import_module(f"{kernel_module.__name__}.reference")


def cases_of(pkg: Package):
    return load_file(pkg.root / "tests" / "cases.py", f"_flashrt_cases_{pkg.python_name}").CASES


def as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def run_case(kernel, reference, case: Case, device, seed: int = 0):
    """Run one case on ``device``; return (verdicts per output, seconds)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    args, kwargs = case.make(device, gen)
    if case.mutates:
        originals = args, kwargs
        args, kwargs = _fresh(*originals)
    start = time.perf_counter()
    got = as_tuple(getattr(kernel, case.function)(*args, **kwargs))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if case.mutates:
        args, kwargs = _fresh(*originals)
    if case.expected is not None:
        want = as_tuple(case.expected(reference, got, args, kwargs))
    else:
        want = as_tuple(getattr(reference, case.function)(*args, **kwargs))
    if len(got) != len(want) or len(got) != len(case.formats):
        raise AssertionError(f"{case.id}: {len(got)} outputs, reference {len(want)}, "
                             f"formats {len(case.formats)}")
    verdicts = [compare(fmt, g, w, **case.compare_kwargs.get(fmt, {}))
                for fmt, g, w in zip(case.formats, got, want)]
    return verdicts, seconds


def _fresh(args, kwargs):
    """Copies of the tensor arguments (the rest passed through)."""
    def copy(a):
        return a.clone() if isinstance(a, torch.Tensor) else a
    return tuple(copy(a) for a in args), {k: copy(v) for k, v in kwargs.items()}


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    failing = [v for v in verdicts if not v.ok]
    return failing[0] if failing else max(verdicts, key=lambda v: v.max_abs)


# --- out-variant op checks (the registered op against its wrapper and its fake) ----------

def written_args(op) -> list:
    """Positions of the arguments an out-variant custom op writes (``Tensor!``)."""
    return [i for i, a in enumerate(op.default._schema.arguments)
            if a.alias_info and a.alias_info.is_write]


def assert_op_equals_wrapper(op, wrapper, args, poison, same_bits):
    """The registered op (what torch.compile calls) writes the bits the eager wrapper
    writes: ``args`` (outputs included) through ``op``; the same inputs with fresh
    ``poison(shape, dtype, device)`` outputs through ``wrapper``."""
    written = written_args(op)
    op(*args)
    direct = list(args)
    for i in written:
        direct[i] = poison(tuple(args[i].shape), args[i].dtype, args[i].device)
    wrapper(*direct)
    for i in written:
        assert same_bits(args[i], direct[i]), op.default._schema.arguments[i].name


def assert_fake_rejects_wrong_output_shapes(op, args, match="must have"):
    """The op's fake (what torch.compile traces) accepts ``args`` and raises RuntimeError
    when any one output is one element too wide in its last dimension."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        op(*fake)  # the valid call traces
        for i in written_args(op):
            bad = list(fake)
            shape = list(args[i].shape)
            shape[-1] += 1
            bad[i] = torch.empty(shape, dtype=args[i].dtype, device=args[i].device)
            try:
                op(*bad)
            except RuntimeError as e:
                assert re.search(match, str(e)), f"{op}: output {i}: {e}"
            else:
                raise AssertionError(f"{op}: the fake accepted output {i} of shape {shape}")
