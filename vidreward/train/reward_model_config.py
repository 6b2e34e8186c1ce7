"""Typed config of ``vidreward train reward-model`` (HALO Sec. 3.2, Eq. 6; the trainer is
:mod:`vidreward.train.reward_model`)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class RewardModelTrainConfig:
    """The ``train_reward_model`` job (HALO video or patch reward model, Eq. 6)."""

    kind: Literal["video", "patch"] = "video"
    """which model: "video" (whole videos) or "patch" (patch crops; items need "patch": [row, col])"""
    train_data: str = "data/halo/video_labels.jsonl"
    """JSONL of {"video" or "frames", "prompt", "labels": {5 dims}, optional "patch": [row, col]}"""
    val_data: str = ""
    """held-out JSONL in the same format; empty = split val_fraction of train_data (by video)"""
    val_fraction: float = 0.1
    """share of the videos of train_data held out for validation when val_data is empty"""
    backbone: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    """VLM checkpoint for a fresh head (local dir or hub id); used only when init_from is empty"""
    init_from: str = ""
    """saved reward model to continue from (the video RM, for the patch RM); empty = start from backbone"""
    family: str = ""
    """critic family of backbone (qwen2_5_vl, qwen2_vl, internvl); empty = from its config.model_type"""
    trust_remote_code: bool = False
    """let transformers run code shipped with the checkpoint (off: only built-in classes load)"""
    question_template: str = ""
    """question text with {prompt}; empty = VideoScore's (fresh head) or the one saved with init_from"""
    num_frames: int = 8
    """frames sampled uniformly from each video"""
    fps: float = 0.0
    """frame rate the model assumes for the sampled frames; 0 = 2.0 (fresh) or the saved value (init_from)"""
    min_pixels: int = 0
    """per-frame pixel budget override (Qwen families); 0 = the processor's (fresh) or the saved value"""
    max_pixels: int = 0
    """per-frame pixel budget override (Qwen families); 0 = the processor's (fresh) or the saved value"""
    grid: tuple[int, int] = (3, 3)
    """patch grid (h_n, w_n) the "patch" indices refer to"""
    train: Literal["full", "head", "head_llm", "lora"] = "full"
    """what trains: everything, only the head, head + language model (vision frozen), or head + LoRA on the LLM"""
    lora_rank: int = 64
    """LoRA rank (train: lora); adapters are merged into the backbone when the model is saved"""
    lora_alpha: float = 64.0
    """LoRA alpha (update scale alpha / rank)"""
    lora_target_modules: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    """names of the language model's linear layers that get adapters"""
    batch_size: int = 64
    """global batch size per optimizer step (paper: 64)"""
    micro_batch_size: int = 4
    """items per forward pass; gradients accumulate over batch_size / micro_batch_size passes"""
    eval_batch_size: int = 8
    """items per forward pass during validation"""
    lr: float = 1e-6
    """AdamW learning rate (paper: 1e-6)"""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay"""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """decay after warmup (the paper does not state one)"""
    warmup_steps: int = 0
    """linear warmup steps from 0 to lr"""
    max_grad_norm: float = 1.0
    """gradient clipping by global norm; 0 disables"""
    epochs: int = 10
    """passes over the training data (paper: 10)"""
    max_steps: int = 0
    """stop after this many optimizer steps in total; 0 = run all epochs"""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype of the backbone weights (keep float32 at lr 1e-6: bf16 weights round such small updates away)"""
    autocast: Literal["none", "bfloat16", "float16"] = "none"
    """mixed-precision compute for forward passes (weights stay in dtype)"""
    gradient_checkpointing: bool = False
    """recompute backbone activations in the backward pass (less memory, more compute)"""
    device: str = "auto"
    """"auto" (cuda if available), "cpu", "cuda", "cuda:1", ..."""
    seed: int = 0
    """seed of the head init, the validation split and the per-epoch shuffles"""
    output_dir: str = "outputs/halo/reward_model_video"
    """run directory: model/, checkpoints/, metrics.jsonl, config.yaml"""
    checkpoint_every: int = 100
    """optimizer steps between checkpoints (a final one is always written); 0 = final only"""
    keep_checkpoints: int = 2
    """how many checkpoints to keep"""
    resume: str = "auto"
    """"auto" = continue from the last checkpoint in output_dir, "" = start fresh, or a checkpoint dir"""
    max_consecutive_nonfinite: int = 5
    """stop after this many optimizer steps in a row with a NaN/inf loss or gradient"""

    def __post_init__(self) -> None:
        if not self.backbone and not self.init_from:
            raise ValueError("set backbone (a VLM checkpoint) or init_from (a saved reward model)")
        for name in ("batch_size", "micro_batch_size", "eval_batch_size", "epochs", "num_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.val_data and self.val_fraction == 0:
            raise ValueError("no validation data: set val_data or a val_fraction > 0")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be two positive ints (h_n, w_n), got {self.grid}")
