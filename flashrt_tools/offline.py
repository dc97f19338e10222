"""Compile a Triton kernel for sm_90 on any machine (no GPU) and read what ptxas made of
it: registers a thread, local-memory (spill) bytes, SASS instruction counts.

Triton's wheel carries ptxas and cuobjdump, so a launch configuration's register
count, and so how many programs fit on an SM, is known before a GPU run; and two
versions of a kernel can be compared instruction for instruction (a refactor that
should change nothing). This is how the tune candidates of the qkv-cache-rope and
adaptive-norms kernels were sized, e.g.::

    from flashrt_tools.offline import compile_sm90, resources
    ck = compile_sm90(norm_rope._wan_qkv_kernel, {"x_ptr": "*i32", ...},
                      {"P": 1536, ...}, num_warps=4, aligned=range(9))
    resources(ck)  # {"regs": 77, "local_bytes": 0, "sass": 704, "opcodes": Counter(...)}

Run it outside Triton's interpreter (TRITON_INTERPRET unset, e.g. not under this
repository's CPU pytest run): kernels decorated while it is set are interpreter objects,
which cannot be compiled. Timings still need the GPU: fewer registers are a hypothesis,
not a speedup.
"""

import collections
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

SM90 = GPUTarget("cuda", 90, 32)


def compile_sm90(fn, signature: dict, constexprs: dict, *, num_warps: int = 4,
                 aligned=(), **options):
    """``fn`` (a ``@triton.jit`` kernel) compiled for sm_90. ``signature`` maps each
    runtime argument, in the kernel's order, to a Triton type string ("*bf16", "i32",
    "fp32", ...); ``constexprs`` gives every constexpr (defaults included); ``aligned``:
    the argument positions a real launch specializes as divisible by 16 (pointers and
    model-size integers), without which loads are laid out as for unaligned data."""
    if not isinstance(fn, triton.runtime.jit.JITFunction):
        raise TypeError(f"{getattr(fn, '__name__', fn)!r} is not a compilable @triton.jit kernel "
                        "(decorated under TRITON_INTERPRET=1? compile outside the interpreter)")
    sig = dict(signature)
    sig.update({k: "constexpr" for k in constexprs})
    attrs = {(i,): [["tt.divisibility", 16]] for i in aligned}
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=SM90, options={"num_warps": num_warps, **options})


def _cuobjdump(cubin: bytes, *args) -> str:
    import triton.backends.nvidia as nvidia
    tool = os.path.join(os.path.dirname(nvidia.__file__), "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([tool, *args, f.name], capture_output=True, text=True,
                              check=True).stdout


def resources(compiled) -> dict:
    """Registers a thread, local (spill) bytes a thread, SASS instruction count and the
    count of each opcode (without modifiers) of a ``compile_sm90`` result."""
    cubin = compiled.asm["cubin"]
    usage = _cuobjdump(cubin, "--dump-resource-usage")
    regs, local = re.search(r"REG:(\d+).*?LOCAL:(\d+)", usage, re.S).groups()
    sass = _cuobjdump(cubin, "-sass")
    ops = re.findall(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass)
    return {"regs": int(regs), "local_bytes": int(local), "sass": len(ops),
            "opcodes": collections.Counter(op.split(".")[0] for op in ops)}
