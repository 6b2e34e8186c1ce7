"""Write a fine-tuned world VAE into a generator directory: atomically, and on the record of its build report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vidreward.world.build_loop import write_json


def export_vae(vae, generator_dir: str | Path) -> None:
    """Atomically replace ``<generator_dir>/vae`` with ``vae`` (safetensors); nothing else is touched."""
    generator_dir = Path(generator_dir)
    tmp, old = generator_dir / ".vae.tmp", generator_dir / ".vae.old"
    for path in (tmp, old):
        if path.exists():
            shutil.rmtree(path)
    vae.save_pretrained(str(tmp), safe_serialization=True)
    config_path = tmp / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("_name_or_path", None)  # where this run loaded from: a local path, not part of the model
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    target = generator_dir / "vae"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


def record_in_report(generator_dir: str | Path, section: dict) -> None:
    """Set the ``vae_decoder`` section of ``<generator_dir>/build_report.json`` (atomic write)."""
    path = Path(generator_dir) / "build_report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report["vae_decoder"] = section
    write_json(path, report)
