"""Shared by the multi-rank trainer tests: write a job preset and run ``python -m vidreward`` under torchrun (CPU)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from vidreward.config import to_dict

REPO = Path(__file__).resolve().parents[1]


def write_preset(cfg: Any, job: str, path: Path) -> Path:
    """Write the dataclass config ``cfg`` as a YAML preset of ``job`` (e.g. ``train_drf``) to ``path``."""
    data = to_dict(cfg)
    data["job"] = job
    path.write_text(yaml.safe_dump(data))
    return path


def run_vidreward_torchrun(argv: list[str], nproc: int = 2, timeout: float = 360) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node nproc -m vidreward *argv`` (gloo on CPU, one thread per rank).

    Returns the finished process (stdout/stderr captured as text); the caller asserts on ``returncode``.
    """
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, VIDREWARD_NO_PROGRESS="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", str(nproc), "-m", "vidreward", *argv],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
