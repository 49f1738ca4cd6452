"""The package built as a wheel holds the kernels and the base model, and works installed.

One smoke test, about 10-20 s: it builds a wheel from a copy of the project, installs it into
a fresh venv and scores a sentence with `base` from outside the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import lm
from lm import native

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "Wherefore art thou Romeo?"
# What a wheel is built from: the project without tests, outputs or local state.
NOT_BUILT_FROM = shutil.ignore_patterns(
    ".git", ".venv", "out", "build", "*.egg-info", "__pycache__", "*.so", ".*cache", "tests",
    "docs", "scripts", "corpora", "channels", "*.db", "*.db-*", ".env")
PROBE = f"""
import lm
from lm import native
assert native.available(), "no kernels in the installed package"
print(lm.__file__)
print(lm.score(lm.load("base"), {SENTENCE!r}).nats)
"""


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(not native.available(), reason="no C compiler here: the wheel has no kernels")
def test_a_wheel_installed_in_a_fresh_venv_scores_with_base_and_the_kernels(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_BUILT_FROM)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "-q", "-w", tmp_path / "dist", "./src", cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("babble-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lm/data/base.pt" in names and "lm/native.c" in names
    assert any(n.startswith("lm/_native") and n.endswith(".so") for n in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).strip())
    # torch and numpy come from this environment's site-packages, read as a plain folder
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", wheel, cwd=tmp_path)

    where, nats = run(python, "-c", PROBE, cwd=tmp_path).split()
    assert Path(where).is_relative_to(venv)  # the installed package, not this checkout
    assert float(nats) == pytest.approx(lm.score(lm.load("base"), SENTENCE).nats, abs=1e-4)
