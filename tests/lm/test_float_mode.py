"""Loading and using the compiled kernels leaves the process's float mode alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lm import native

PROBE = """
import numpy as np, torch
import lm
from lm import native
tiny = np.float32(1e-40)
before = (float(tiny * np.float32(1)), 5e-324 * 1.0, torch.tensor(1e-40).item())
native.library()
m = lm.load("base")
lm.score(m, "hello there")
after = (float(tiny * np.float32(1)), 5e-324 * 1.0, torch.tensor(1e-40).item())
print(before == after and all(x != 0 for x in after))
"""


@pytest.mark.skipif(native.library() is None, reason="no C compiler: no kernels to check")
def test_kernels_leave_subnormals_alone():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
