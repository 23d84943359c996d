"""A non-editable install in a fresh virtual environment, run from another folder: the
console script, the package data (the MATLAB and Scilab code of the language rows, the C
floor of the bench) and the golden files must all come with the package.

The virtual environment sees the packages of the environment the tests run in (numpy,
JAX, torch and the rest are not downloaded again: several GB) through a .pth line naming
that environment's site-packages, after its own; the project itself is installed into it
from a copy of the source tree, so nothing of the checkout is on the path (the running
environment's editable install is a .pth file there, which a .pth line does not run)."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "site", ".hypothesis", ".pytest_cache", "out", "plots"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    for module in ("jax", "torch", "optax"):
        pytest.importorskip(module)
    base = tmp_path_factory.mktemp("install")
    shutil.copytree(ROOT, base / "src", ignore=COPY_IGNORE)
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    python = base / "venv" / "bin" / "python"
    # --system-site-packages would see the base interpreter's, not the virtual environment
    # the tests may run in: name the running environment's site-packages instead
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    here = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (Path(own) / "running-environment.pth").write_text("".join(f"{path}\n" for path in here))
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(base / "src")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(base / "src")  # nothing of the source tree is left to find
    work = base / "elsewhere"
    work.mkdir()
    return base / "venv" / "bin", work


def run(bin_dir, work, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], cwd=work, env=env, check=False, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_the_installed_package_is_the_one_imported(installed):
    bin_dir, work = installed
    found = run(
        bin_dir,
        work,
        "python",
        "-c",
        "import backends, harness, reference; "
        "print(harness.__file__); print(backends.__file__); print(reference.__file__)",
    )
    assert found.returncode == 0, found.stderr
    assert all(str(bin_dir.parent) in line for line in found.stdout.splitlines())


@pytest.mark.slow
def test_xorcheck_runs_the_default_run_from_another_folder(installed):
    bin_dir, work = installed
    result = run(bin_dir, work, "xorcheck", "--epochs", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    languages = {"octave": shutil.which("octave-cli"), "scilab": shutil.which("scilab-cli")}
    assert f"all {4 + sum(map(bool, languages.values()))} pairs agree" in result.stdout
    for row, installed_program in languages.items():
        assert (f"\n{row} " in result.stdout) == bool(installed_program)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_xorcheck_bench_finds_its_c_floor(installed):
    bin_dir, work = installed
    result = run(bin_dir, work, "xorcheck", "bench", "--repeat", "1", "--no-wall", "--epochs", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    if shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc"):
        assert "C loop (floor)" in result.stdout and "not measured" not in result.stdout
