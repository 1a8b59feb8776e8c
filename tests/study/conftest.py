import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from crossent.study import parse_config
from tests.study.helpers import tiny_raw

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory):
    """``crossent study run --preset quick --workers 1 --threads 1`` once for the session.

    One thread is never the default ``cores // workers`` on a machine with two or more
    cores, so a dropped ``--threads`` shows. Other tests compare their executors' results
    with these (same seeds, one thread).
    """
    from crossent.cli import main

    folder = tmp_path_factory.mktemp("quick")
    db, out, threads = folder / "runs.db", folder / "report", 1
    result = CliRunner().invoke(
        main,
        ["study", "run", "--preset", "quick", "--db", str(db), "--out", str(out),
         "--workers", "1", "--threads", str(threads), "--no-progress"],
        catch_exceptions=False,
    )  # fmt: skip
    return SimpleNamespace(db=db, out=out, threads=threads, result=result)


@pytest.fixture(scope="session")
def tiny_baseline():
    """A tiny study with runs long enough to kill mid-way, and each run's metrics trained in
    this process on one thread: what any executor must reproduce."""
    from crossent.study import expand, run_id
    from crossent.study.runner import execute_run

    config = parse_config(
        tiny_raw(
            study={"name": "tiny", "seeds": [0]},
            training={"epochs": 8, "batch_size": 64, "lr": 0.01},
        )
    )
    return config, {run_id(c): execute_run(c, 1)["metrics"] for c in expand(config)}


@pytest.fixture
def tiny():
    return parse_config(tiny_raw())


@pytest.fixture
def subprocess_env():
    """Environment for `crossent` subprocesses (and their spawned workers)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent.parent / "src"), env.get("PYTHONPATH", "")]
    )
    return env


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train fastest on one thread; on shared cores more threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mount_tmpfs(folder, size_kib):
    """Mount a tmpfs of ``size_kib`` KiB at ``folder``; skip, saying why, where not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full or read-only file system needs root to mount a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """``make(name, size_kib)``: a fresh folder that is a real file system of that size.

    A tmpfs: writing past its size fails with ENOSPC ("No space left on device") exactly as
    a full disk does. ``readonly(folder)`` remounts it read-only (EROFS). Unmounted after.
    """
    mounted = []

    def make(name, size_kib):
        folder = tmp_path / name
        folder.mkdir()
        _mount_tmpfs(folder, size_kib)
        mounted.append(folder)
        return folder

    def readonly(folder):
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)

    make.readonly = readonly
    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)
