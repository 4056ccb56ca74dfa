"""`pip install .` from a copy of the repository into a fresh venv gives glow_tf and its programs,
which run outside the repository folder with a quiet console.

Nothing is downloaded: the fresh venv sees this venv's packages (TensorFlow and the rest, pip,
setuptools) through a .pth file, and pip builds without an isolated build environment."""
import os
import shutil
import subprocess
import sysconfig
import venv

import pytest
import tensorflow as tf

from conftest import REPO_ROOT

PROGRAMS = ("glow-train", "glow-sample", "glow-export", "glow-demo")
TINY_RUN = ["--problem", "digits", "--n_levels", "2", "--depth", "1", "--width", "8", "--nojit_compile",
            "--max_steps", "2", "--noexport", "--anchor_size", "16", "--n_batch_train", "16", "--n_train", "64",
            "--n_batch_init", "16", "--n_test", "10"]


def _copy_project(destination):
    """The files a commit of the work tree would hold: tracked and new ones, none that .gitignore ignores."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            check=True, capture_output=True, text=True).stdout
    for path in filter(None, listed.split("\0")):
        source, target = os.path.join(REPO_ROOT, path), os.path.join(destination, path)
        if os.path.isfile(source):  # a tracked file deleted in the work tree is not there
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)


def _fresh_venv(directory):
    """A venv whose site-packages has nothing but a .pth line to this venv's; its site-packages."""
    venv.EnvBuilder(symlinks=True, with_pip=False).create(directory)
    site_packages = sysconfig.get_path("purelib", vars={"base": str(directory), "platbase": str(directory)})
    with open(os.path.join(site_packages, "project_venv.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")
    return site_packages


def _user_env(venv_dir):
    """A user's environment: the venv's bin first on PATH, none of TensorFlow's variables set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_") and key != "PYTHONPATH"}
    env["PATH"] = os.path.join(venv_dir, "bin") + os.pathsep + env["PATH"]
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv directory, its site-packages, a working directory outside the repository) after `pip install .`."""
    root = tmp_path_factory.mktemp("packaging")
    _copy_project(root / "src")
    site_packages = _fresh_venv(root / "venv")
    result = subprocess.run([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps",
                             "--no-build-isolation", "--quiet", str(root / "src")],
                            cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(root / "src")  # from here on only the installed copy exists
    os.mkdir(root / "work")
    return root / "venv", site_packages, root / "work"


def test_pip_install_gives_the_package_and_its_programs(installed):
    venv_dir, site_packages, work = installed
    for program in PROGRAMS:
        assert os.access(venv_dir / "bin" / program, os.X_OK), program
    where = subprocess.run([str(venv_dir / "bin" / "python"), "-c",
                            "import importlib.util; print(importlib.util.find_spec('glow_tf').origin)"],
                           cwd=work, env=_user_env(venv_dir), capture_output=True, text=True, check=True).stdout
    assert where.strip() == os.path.join(site_packages, "glow_tf", "__init__.py")


def test_the_demo_page_ships_with_the_package(installed):
    _, site_packages, _ = installed
    for name in ("index.html", "demo.js", "demo.css"):  # served from the package: glow-demo needs no network
        assert os.path.isfile(os.path.join(site_packages, "glow_tf", "demo", "web", name)), name


def test_glow_train_help_lists_its_flags(installed):
    venv_dir, _, work = installed
    result = subprocess.run(["glow-train", "--help"], cwd=work, env=_user_env(venv_dir), capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.startswith("glow-train (and train.py): trains Glow"), result.stdout[:500]
    for flag in ("--problem", "--n_levels", "--max_steps", "--strategy"):
        assert f"\n  {flag}:" in result.stdout, flag
    assert result.stderr == ""  # absl's --help exits with status 1, as every absl program's


def test_a_tiny_glow_train_run_finishes_with_glow_tfs_lines_only(installed):
    venv_dir, _, work = installed
    result = subprocess.run(["glow-train", *TINY_RUN, "--logdir", "run"], cwd=work, env=_user_env(venv_dir),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stderr == ""  # no CUDA, oneDNN or absl lines from TensorFlow
    assert tf.train.latest_checkpoint(str(work / "run" / "checkpoints")).endswith("ckpt-2")
    for log in ("train.txt", "test.txt", "config.json"):
        assert os.path.isfile(work / "run" / log), log
