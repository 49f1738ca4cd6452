"""Build steps pyproject.toml cannot state: lm's compiled kernels and the shipped base model.

- lm/native.c (with lm/native_gru.h) becomes lm/_native<EXT_SUFFIX>, a plain shared library that
  lm/native.py loads with ctypes (no Python headers, no module init). Built by `pip install .`,
  `pip install -e .` and `pip wheel .` alike, and optional: without a C compiler the package
  installs without it and lm runs on its torch path.
  Flags: -O3 and -fno-math-errno (lets gcc vectorise calls to expf and logf, with glibc's
  vector math library where there is one; results are unchanged). Never
  -ffast-math: at link time it adds crtfastmath.o, which turns on flush-to-zero for the whole
  process, and in code it turns saturated GRU gates into NaN where torch gives 0 or 1. No
  -march=native either: a wheel runs on other machines, and native.c holds a copy of the GRU
  kernel per instruction set, chosen at run time (lm/native.py).
- data/base.pt goes into the package as lm/data/base.pt, where lm.hub finds it when lm is
  installed rather than run from a checkout.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BASE_MODEL = Path("data") / "base.pt"


class BuildKernels(build_ext):
    """build_ext for a library that is not a Python module: it exports only its C functions."""

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return ext.export_symbols  # not PyInit__native, which does not exist (Windows asks)


class BuildWithBaseModel(build_py):
    """build_py that also copies the shipped base model into the built package (an editable
    install keeps reading data/ in the checkout)."""

    def run(self) -> None:
        super().run()
        src = ROOT / BASE_MODEL
        if not self.editable_mode and src.is_file():
            dst = Path(self.build_lib) / "lm" / "data" / "base.pt"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


# glibc's vector math library, which native.c declares its expf and logf from on x86-64
VECTOR_MATH = ["mvec"] if platform.libc_ver()[0] == "glibc" and platform.machine() == "x86_64" \
    else []

KERNELS = Extension(
    "lm._native",
    sources=["lm/native.c"],
    depends=["lm/native_gru.h"],
    extra_compile_args=["-O3", "-fno-math-errno"],
    libraries=["m", *VECTOR_MATH],
    optional=True,
)

setup(ext_modules=[KERNELS], cmdclass={"build_ext": BuildKernels, "build_py": BuildWithBaseModel})
