"""Suite-wide settings: one torch thread per test process (and its subprocesses).

The machine has two cores; torch's default of one spinning OpenMP thread per core makes
concurrent processes thrash. Tests measure behaviour, not speed, so one thread is enough.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
