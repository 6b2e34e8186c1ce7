"""``vidreward train reward-model``: regression training of the HALO video and patch reward models (Sec. 3.2).

The model (:class:`vidreward.rewards.reward_model.RewardModel`) predicts the five VideoScore dimensions. Training
minimises the regression loss of Eq. 6, the mean squared error over items and dimensions::

    L_reg = 1 / (B |D^VS|) * sum_b sum_{d in D^VS} (p_b^d - g_b^d)^2

where for the patch RM each item b is one patch (i, j) of a video (Eq. 6 sums over the h_n x w_n patches), and for
the video RM a whole video. ``batch_size`` is the global batch (64 in the paper's appendix); it is processed in
micro-batches, each contributing its summed squared error divided by ``B |D^VS|``, so that the accumulated gradient
is exactly that of the global-batch mean. AdamW, lr 1e-6, 10 epochs (paper defaults). The trainer runs in one
process (no torchrun sharding).

* **Video RM**: ``kind: video``, started from a VLM checkpoint (``backbone``) with a fresh head.
* **Patch RM**: ``kind: patch``, continued from a saved video RM (``init_from``) on patch crops
  (:func:`vidreward.halo.grid.crop_patch`) labelled by the teacher (``vidreward halo label-patches``).

Data: a labels JSONL of ``{"video" | "frames", "prompt", "labels": {5 dims}, "patch": [row, col]}`` per item
(format in :mod:`vidreward.train.reward_model_data`); ``patch`` is required for ``kind: patch`` only.

Validation (before training and after each epoch): MSE overall and per dimension, and Spearman's rho per dimension
and of the Eq. 5 reward, against held-out labels (``val_data``, or a ``val_fraction`` split by video so that
patches of one video never straddle train and validation). Lines go to ``<output_dir>/metrics.jsonl`` and the log.
The final model is saved (safetensors) to ``<output_dir>/model``; checkpoints go to ``<output_dir>/checkpoints``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch
import yaml

from vidreward.config import to_dict
from vidreward.halo.analysis import spearman
from vidreward.halo.teacher import DIMENSIONS
from vidreward.log import get_logger, progress
from vidreward.rewards.reward_model import RewardModel, mean_reward
from vidreward.train.checkpoint import (
    TrainState,
    load_checkpoint,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)
from vidreward.train.guards import NonFiniteGuard
from vidreward.train.reward_model_config import RewardModelTrainConfig
from vidreward.train.reward_model_data import LabelledItem, load_frames, read_items, split_validation

log = get_logger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# ---- model ---------------------------------------------------------------------------------------------------
def build_model(cfg: RewardModelTrainConfig, device: str) -> RewardModel:
    """Load the starting model and mark what trains (cfg.train)."""
    dtype = _DTYPES[cfg.dtype]
    overrides = {
        k: v
        for k, v in [
            ("question_template", cfg.question_template),
            ("fps", cfg.fps),
            ("min_pixels", cfg.min_pixels),
            ("max_pixels", cfg.max_pixels),
        ]
        if v
    }
    torch.manual_seed(cfg.seed)  # the fresh head's init
    if cfg.init_from:
        model = RewardModel.from_pretrained(
            cfg.init_from, dtype=dtype, device=device, trust_remote_code=cfg.trust_remote_code
        )
        if overrides or model.spec.kind != cfg.kind or tuple(model.spec.grid) != tuple(cfg.grid):
            spec = dataclasses.replace(model.spec, kind=cfg.kind, grid=tuple(cfg.grid), **overrides)
            model = RewardModel(model.backbone, model.processor, spec, head=model.head)
    else:
        model = RewardModel.from_backbone(
            cfg.backbone,
            kind=cfg.kind,
            family=cfg.family or None,
            dtype=dtype,
            device=device,
            trust_remote_code=cfg.trust_remote_code,
            grid=tuple(cfg.grid),
            **overrides,
        )
    model.requires_grad_(cfg.train == "full")
    model.head.requires_grad_(True)
    if cfg.train == "head_llm":
        model.backbone.language_model.requires_grad_(True)
    if cfg.gradient_checkpointing:
        if hasattr(model.backbone, "activation_checkpointing_enable"):  # the transformers >= 5 name
            model.backbone.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            model.backbone.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    if cfg.train == "lora":
        from peft import LoraConfig, get_peft_model

        targets = "|".join(cfg.lora_target_modules)
        lora = LoraConfig(
            r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=rf".*language_model.*\.({targets})"
        )
        model.backbone = get_peft_model(model.backbone, lora)  # freezes the backbone, adapters train
    return model


def finished_model(model: RewardModel) -> RewardModel:
    """The model to save: LoRA adapters merged into the backbone."""
    if hasattr(model.backbone, "merge_and_unload"):
        model.backbone = model.backbone.merge_and_unload()
    return model


# ---- loss ----------------------------------------------------------------------------------------------------
def regression_loss(pred: torch.Tensor, target: torch.Tensor, num_items: int | None = None) -> torch.Tensor:
    """Eq. 6: ``sum_b sum_d (p_b^d - g_b^d)^2 / (num_items * |D|)`` for ``pred``, ``target`` ``[b, D]``.

    ``num_items`` defaults to ``b`` (the plain mean). Passing the global batch size ``B`` for each micro-batch
    makes the micro-batch losses sum to the global-batch Eq. 6 loss, so accumulated gradients are exact.
    """
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(
            f"pred and target must both be [b, D], got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return ((pred - target) ** 2).sum() / ((num_items or pred.shape[0]) * pred.shape[1])


# ---- validation ----------------------------------------------------------------------------------------------
def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@torch.no_grad()
def evaluate(model: RewardModel, items: list[LabelledItem], cfg: RewardModelTrainConfig, autocast) -> dict:
    """Validation MSE (overall, per dimension) and Spearman per dimension and of the Eq. 5 reward."""
    model.eval()
    preds = []
    for start in range(0, len(items), cfg.eval_batch_size):
        batch = items[start : start + cfg.eval_batch_size]
        with autocast():
            out = model(
                [load_frames(it, cfg.num_frames, cfg.grid) for it in batch], [it.prompt for it in batch]
            )
        preds.append(out.float().cpu())
    pred = torch.cat(preds)  # [V, D]
    target = torch.stack([it.labels for it in items])  # [V, D]
    sq = (pred - target) ** 2
    metrics: dict = {"val_mse": sq.mean().item(), "val_items": len(items)}
    for d, name in enumerate(DIMENSIONS):
        metrics[f"val_mse/{name}"] = sq[:, d].mean().item()
    if len(items) >= 2:
        for d, name in enumerate(DIMENSIONS):
            metrics[f"val_spearman/{name}"] = _finite_or_none(
                spearman(pred[:, d].tolist(), target[:, d].tolist())
            )
        rho = spearman(mean_reward(pred).tolist(), mean_reward(target).tolist())
        metrics["val_spearman/reward"] = _finite_or_none(rho)
    return metrics


# ---- training ------------------------------------------------------------------------------------------------
def _lr_lambda(cfg: RewardModelTrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress_ = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        if cfg.lr_schedule == "linear":
            return max(0.0, 1.0 - progress_)
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))
        return 1.0

    return factor


def _log_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def train_reward_model(cfg: RewardModelTrainConfig) -> dict:
    """Train, validate, checkpoint and save; return the last validation metrics."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(
        yaml.safe_dump({"job": "train_reward_model", **to_dict(cfg)}, sort_keys=False)
    )
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    train_items = read_items(cfg.train_data, cfg.kind, cfg.grid)
    if cfg.val_data:
        val_items = read_items(cfg.val_data, cfg.kind, cfg.grid)
    else:
        train_items, val_items = split_validation(train_items, cfg.val_fraction, cfg.seed)
    log.info(
        "%s reward model: %d training items, %d validation items", cfg.kind, len(train_items), len(val_items)
    )

    model = build_model(cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    log.info("training %s: %d tensors, %d parameters", cfg.train, len(params), sum(p.numel() for p in params))
    steps_per_epoch = math.ceil(len(train_items) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
    amp = None if cfg.autocast == "none" else _DTYPES[cfg.autocast]

    def autocast():
        return torch.autocast(torch.device(device).type, dtype=amp, enabled=amp is not None)

    state = TrainState()
    ckpt_dir = out / "checkpoints"
    resume_from = resolve_resume(cfg.resume, ckpt_dir)
    if resume_from is not None:
        loaded = load_checkpoint(resume_from)
        if sorted(loaded.trainable) != sorted(names):
            raise ValueError(
                f"checkpoint {resume_from} holds other trainable tensors than train={cfg.train}; "
                "resume with the same config or set resume=''"
            )
        model.load_state_dict(loaded.trainable, strict=False)
        optimizer.load_state_dict(loaded.optimizer)
        scheduler.load_state_dict(loaded.lr_scheduler)
        restore_rng_state(loaded.rng)
        state = loaded.state
        log.info("resumed from %s at step %d", resume_from, state.step)
    else:
        (out / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
        metrics = {"step": 0, "epoch": 0, **evaluate(model, val_items, cfg, autocast)}
        _log_metrics(out / "metrics.jsonl", metrics)
        log.info("before training: val_mse=%.4f", metrics["val_mse"])

    def checkpoint() -> None:
        trainable = dict(zip(names, params))
        save_checkpoint(ckpt_dir, state, trainable, optimizer, scheduler, keep_last=cfg.keep_checkpoints)

    guard = NonFiniteGuard(cfg.max_consecutive_nonfinite, skipped_total=state.skipped_nonfinite)
    metrics: dict = {}
    bar = progress(total=total_steps, initial=state.step, desc=f"train {cfg.kind} RM")
    while state.step < total_steps:
        epoch, index = divmod(state.step, steps_per_epoch)
        order = torch.randperm(
            len(train_items), generator=torch.Generator().manual_seed(cfg.seed + 1 + epoch)
        )
        batch = [
            train_items[i] for i in order[index * cfg.batch_size : (index + 1) * cfg.batch_size].tolist()
        ]
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for start in range(0, len(batch), cfg.micro_batch_size):
            micro = batch[start : start + cfg.micro_batch_size]
            frames = [load_frames(it, cfg.num_frames, cfg.grid) for it in micro]
            target = torch.stack([it.labels for it in micro]).to(device)  # [b, D]
            with autocast():
                pred = model(frames, [it.prompt for it in micro])  # [b, D]
            loss = regression_loss(pred.float(), target, num_items=len(batch))  # this micro-batch's share
            loss.backward()
            loss_sum += loss.item()
        if guard.check(loss_sum, params, state.step):
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        state.step += 1
        state.skipped_nonfinite = guard.skipped_total
        state.data_position = state.step * cfg.batch_size
        _log_metrics(
            out / "metrics.jsonl",
            {"step": state.step, "epoch": epoch, "train_loss": _finite_or_none(loss_sum), "lr": lr},
        )
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.4f}")
        end_of_epoch = state.step % steps_per_epoch == 0 or state.step == total_steps
        if end_of_epoch:
            metrics = {"step": state.step, "epoch": epoch + 1, **evaluate(model, val_items, cfg, autocast)}
            _log_metrics(out / "metrics.jsonl", metrics)
            log.info(
                "epoch %d step %d: val_mse=%.4f reward spearman=%s",
                epoch + 1,
                state.step,
                metrics["val_mse"],
                metrics.get("val_spearman/reward"),
            )
        if state.step == total_steps or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0):
            checkpoint()
    bar.close()
    finished_model(model).save_pretrained(out / "model")
    if not metrics:  # resumed after the last step: report the saved model's validation metrics
        metrics = {"step": state.step, **evaluate(model, val_items, cfg, autocast)}
    (out / "val_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def run(args: argparse.Namespace) -> int:
    """Load the config and train."""
    from vidreward.config import load_config

    _, cfg = load_config(args.config, args.overrides, job="train_reward_model")
    metrics = train_reward_model(cfg)
    log.info("done: val_mse=%.4f; model saved to %s", metrics["val_mse"], Path(cfg.output_dir) / "model")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train reward-model``."""
    from vidreward.cli import add_config_arguments

    parser = subparsers.add_parser("reward-model", help="train the HALO video or patch reward model (Eq. 6)")
    add_config_arguments(parser)
    parser.set_defaults(func=run)
