"""The resumable training loop shared by the stages of the world generator build.

A stage owns ``<work_dir>/<stage>/``: atomic checkpoints under ``checkpoints/`` (weights, optimiser, RNG, step,
elapsed seconds; :mod:`vidreward.train.checkpoint`) and ``done.json`` once finished. Re-running the build
resumes from the last checkpoint, and a finished stage is skipped. Batches are chosen by the step index
(``batch_fn(step)`` must be a pure function of the step), so a resumed run draws the same data as one that
never stopped.

Learning rate: linear warm-up over ``warmup_steps``, then a cosine from ``lr`` to ``lr_final_frac * lr`` over the
stage's progress ``max(step / max_steps, elapsed / minutes)`` — a step budget when the machine is fast enough,
the wall-clock cap otherwise (then the schedule, not the data, depends on the machine's speed).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vidreward.log import get_logger, progress
from vidreward.train.checkpoint import (
    TrainState,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

log = get_logger(__name__)


@dataclass
class StageBudget:
    """Schedule and budget of one stage."""

    lr: float
    """peak learning rate"""
    lr_final_frac: float
    """final learning rate as a fraction of lr"""
    warmup_steps: int
    """linear warm-up steps"""
    max_steps: int
    """step budget"""
    minutes: float
    """wall-clock cap in minutes"""
    checkpoint_every: int
    """steps between checkpoints"""
    eval_every: int
    """steps between evaluations (0 = never during training)"""


def learning_rate(budget: StageBudget, step: int, elapsed: float) -> float:
    """The module doc's schedule at ``step`` after ``elapsed`` seconds."""
    warm = min(1.0, (step + 1) / max(1, budget.warmup_steps))
    frac = min(1.0, max(step / budget.max_steps, elapsed / (60.0 * budget.minutes)))
    cosine = budget.lr_final_frac + (1 - budget.lr_final_frac) * 0.5 * (1 + math.cos(math.pi * frac))
    return budget.lr * warm * cosine


def stage_done(stage_dir: Path) -> dict | None:
    """The ``done.json`` record of a finished stage, else None."""
    path = stage_dir / "done.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data: dict | list) -> None:
    """Atomic JSON write (a temp file beside ``path``, then a rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def mark_done(stage_dir: Path, record: dict) -> None:
    """Write ``done.json`` atomically."""
    write_json(stage_dir / "done.json", record)


def measured_once(path: Path, measure: Callable[[], dict]) -> dict:
    """The record in ``path`` if a run already wrote it, else ``measure()``, written there atomically (so a stage's
    "before" metrics are measured once, on the model it started from, however often it resumes)."""
    if path.is_file():
        return json.loads(path.read_text())
    record = measure()
    write_json(path, record)
    return record


def train_stage(
    name: str,
    stage_dir: Path,
    model: torch.nn.Module,
    loss_fn: Callable[[int], tuple[torch.Tensor, dict[str, float]]],
    budget: StageBudget,
    evaluate: Callable[[int], bool] | None = None,
    keep_last: int = 2,
    keep_every: int = 0,
) -> dict:
    """Train ``model`` with AdamW on ``loss_fn(step)`` until the budget ends or ``evaluate(step)`` returns True.

    ``evaluate`` runs every ``budget.eval_every`` steps and at the end; it returns True to stop early. With
    ``keep_every > 0`` the weights at every multiple of it are also saved under ``snapshots/`` (the DiT stage
    evaluates them afterwards). Returns ``{"steps", "seconds", "stopped_early"}``.
    """
    ckpt_dir = stage_dir / "checkpoints"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=budget.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, elapsed = 0, 0.0
    found = list_checkpoints(ckpt_dir)
    if found:
        ckpt = load_checkpoint(found[-1])
        model.load_state_dict(ckpt.trainable)
        optimizer.load_state_dict(ckpt.optimizer)
        restore_rng_state(ckpt.rng)
        step, elapsed = ckpt.state.step, float(ckpt.state.extra["elapsed"])
        log.info("%s: resumed from %s (step %d, %.1f min)", name, found[-1], step, elapsed / 60)
    stopped_early = False
    bar = progress(total=budget.max_steps, initial=step, desc=name)
    start = time.monotonic() - elapsed
    model.train()
    while step < budget.max_steps and elapsed < 60.0 * budget.minutes:
        lr = learning_rate(budget, step, elapsed)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, logs = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        elapsed = time.monotonic() - start
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.1e}", **{k: f"{v:.3g}" for k, v in logs.items()})
        if keep_every and step % keep_every == 0:
            save_checkpoint(stage_dir / "snapshots", TrainState(step=step, extra={"elapsed": elapsed}),
                            model.state_dict(), keep_last=0)
        if step % budget.checkpoint_every == 0:
            save_checkpoint(ckpt_dir, TrainState(step=step, extra={"elapsed": elapsed}), model.state_dict(),
                            optimizer, keep_last=keep_last)
        if evaluate is not None and budget.eval_every and step % budget.eval_every == 0:
            model.eval()
            stop = evaluate(step)
            model.train()
            start = time.monotonic() - elapsed  # evaluation time is not training time
            if stop:
                stopped_early = True
                break
    bar.close()
    model.eval()
    save_checkpoint(ckpt_dir, TrainState(step=step, extra={"elapsed": elapsed}), model.state_dict(), optimizer,
                    keep_last=keep_last)
    return {"steps": step, "seconds": elapsed, "stopped_early": stopped_early}
