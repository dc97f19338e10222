"""`flashrt validate`: build every package, load it through `kernels`, and check
every public function against its reference.py on whatever device is present.

On a CPU-only machine the Triton kernels run through the interpreter (exact
casts installed); on a GPU they run natively. Prints progress, then one table
row per (package, function): pass/fail, worst max-abs error, device, cases.
Exit status 1 on any failure (or a public function without a case).
"""

import collections
import time

from .repo import load_common, select
from .validation import cases_of, device_for_run, load_built, reference_of, run_case, worst


def validate(package_names=(), *, seed=0, log=print) -> int:
    device = device_for_run()
    interp = device.type == "cpu"
    if interp:
        load_common("_host").install_interpreter_fixes()
    where = "CPU, Triton interpreter" if interp else f"{device} ({_gpu_name()})"
    log(f"flashrt validate on {where}")
    rows, failures = [], 0
    for pkg in select(package_names):
        t0 = time.perf_counter()
        log(f"[{pkg.name}] building and loading through kernels.get_local_kernel ...")
        kernel = load_built(pkg, log=lambda m: log(f"  {m}"))
        reference = reference_of(kernel)
        per_function = collections.OrderedDict((name, []) for name in sorted(kernel.__all__)
                                               if name != "layers")
        cases = cases_of(pkg)
        for i, case in enumerate(cases, 1):
            verdicts, seconds = run_case(kernel, reference, case, device, seed=seed)
            v = worst(verdicts)
            log(f"  ({i}/{len(cases)}) {case.id}: {'pass' if v.ok else 'FAIL'} "
                f"max_abs={v.max_abs:.3g} ({seconds:.2f}s)")
            if not v.ok:
                for x in verdicts:
                    log(f"      {x.message}")
            per_function.setdefault(case.function, []).append(v)
        for name, verdicts in per_function.items():
            if not verdicts:
                rows.append((pkg.name, name, "FAIL", "-", where, "no case covers it"))
                failures += 1
                continue
            bad = [v for v in verdicts if not v.ok]
            failures += bool(bad)
            rows.append((pkg.name, name, "FAIL" if bad else "pass",
                         f"{max(v.max_abs for v in verdicts):.3g}", where,
                         f"{len(verdicts) - len(bad)}/{len(verdicts)} cases"))
        log(f"[{pkg.name}] done in {time.perf_counter() - t0:.1f}s")
    _print_table(rows, log)
    log(f"validate: {'FAILED' if failures else 'all passed'} "
        f"({len(rows)} function(s), {failures} failing)")
    return 1 if failures else 0


def _gpu_name():
    import torch

    return torch.cuda.get_device_name()


def _print_table(rows, log):
    header = ("package", "function", "result", "max_abs", "device", "cases")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    log("")
    log(line.format(*header))
    log(line.format(*("-" * w for w in widths)))
    for r in rows:
        log(line.format(*r))
