"""Loading and using the compiled kernels leaves the process's float mode alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lm import native

# Subnormal numbers survive in numpy, Python floats and torch before and after the kernels are
# loaded and used (flush-to-zero, which -ffast-math at link time turns on, would make them 0).
PROBE = """
import numpy as np, torch
import lm
from lm import native
tiny = np.float32(1e-40)
before = (float(tiny * np.float32(1)), 5e-324 * 1.0, torch.tensor(1e-40).item())
assert native.available()
m = lm.load("base")
lm.score(m, "hello there")
lm.sample(m, lm.SampleConfig(seed=0, max_chars=5))
after = (float(tiny * np.float32(1)), 5e-324 * 1.0, torch.tensor(1e-40).item())
print(before == after and all(x != 0 for x in after))
"""


@pytest.mark.skipif(not native.available(), reason="kernels not built: nothing to check")
def test_kernels_leave_subnormals_alone():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
