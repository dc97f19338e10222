"""Every script in examples/ runs to completion (on CPU through the Triton interpreter,
on a GPU natively) and verifies its own output: a docs example that rots fails here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script):
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=script.parent.parent)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "FAIL" not in done.stdout, done.stdout[-2000:]
