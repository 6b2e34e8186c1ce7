"""Config of the HALO loop in the procedural world (``job: world_gran_dpo``, issue item 7).

One preset (``configs/world/gran_dpo.yaml``) drives prompts -> sample N per prompt -> oracle labels -> video and
patch reward models -> score -> pairs -> Gran-DPO with LoRA -> before/after report. The Gran-DPO part reuses the
trainer's own config sections (loss, optim, train, logging) unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from vidreward.generators.config import GeneratorConfig, LoraConfig, SamplingConfig
from vidreward.train.common_config import LoggingConfig, OptimConfig
from vidreward.train.gran_dpo_config import GranDPOLoopConfig, GranDPOLossConfig


@dataclasses.dataclass
class WorldPromptsConfig:
    """Training prompts: world captions (train split) through the Eq. 10 filter."""

    num_prompts: int = 24
    """training prompts to keep"""
    tau: float = 0.85
    """Eq. 10 threshold against the held-out report prompts and the earlier kept prompts (lexical similarity)"""


@dataclasses.dataclass
class WorldRewardModelsConfig:
    """The world's video and patch reward models, trained on oracle labels when missing (Sec. 3.2)."""

    backbone: str = ""
    """VLM the video RM starts from; "" = the shipped world critic (vidreward/world/assets/critic) when present,
    else a tiny random Qwen2.5-VL built in the run directory"""
    video_model: str = ""
    """an existing video RM to use instead of training one ("" = <output_dir>/reward_models/video/model)"""
    patch_model: str = ""
    """an existing patch RM ("" = <output_dir>/reward_models/patch/model, continued from the video RM)"""
    label_videos: int = 60
    """candidates labelled by the oracle (video label + every patch) for RM training; 0 = all"""
    val_fraction: float = 0.2
    """share of the labelled videos held out for the RMs' validation MSE / Spearman"""
    num_frames: int = 4
    """frames per video the RMs see"""
    pixels: int = 3136
    """per-frame pixel budget (min = max) of the RMs' Qwen preprocessing; 3136 = 56 x 56"""
    train: Literal["full", "head", "head_llm", "lora"] = "full"
    """what trains (a tiny backbone trains fully)"""
    lr: float = 3e-4
    """AdamW lr; the paper's 1e-6 continues a pretrained VideoScore, a small world backbone needs more"""
    video_epochs: int = 12
    """epochs of the video RM (few labelled videos: more passes)"""
    patch_epochs: int = 4
    """epochs of the patch RM (h_n * w_n items per labelled video)"""
    batch_size: int = 16
    """items per optimizer step"""
    micro_batch_size: int = 8
    """items per forward pass"""


@dataclasses.dataclass
class WorldReportConfig:
    """Before/after evaluation on held-out world prompts."""

    num_prompts: int = 16
    """held-out prompts (these are also T^E of the prompt filter)"""
    seeds: list[int] = dataclasses.field(default_factory=lambda: [1000])
    """noise seeds per prompt (video i of seed s starts from its own generator)"""
    batch_size: int = 16
    """videos per sampling batch"""


@dataclasses.dataclass
class WorldGranDPOConfig:
    """``vidreward train gran-dpo --config configs/world/gran_dpo.yaml``: the full HALO loop in the world."""

    output_dir: str = "runs/world_gran_dpo"
    """run directory: data/, reward_models/, the Gran-DPO run (checkpoints, metrics, final), report.json"""
    data_dir: str = ""
    """where data/ (prompts, candidates, scores, pairs) and reward_models/ go; "" = output_dir. The Table 2
    ablation presets point it at the full run's, so every variant trains on the same pairs"""
    seed: int = 0
    """seeds candidate noise, the pair order and the Gran-DPO noise/timesteps"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    generator: GeneratorConfig = dataclasses.field(
        default_factory=lambda: GeneratorConfig(lora=LoraConfig(rank=64, alpha=64.0, init_seed=0)))
    """the world generator; its LoRA settings are the Gran-DPO adapters (candidates come from the base model)"""
    prompts: WorldPromptsConfig = dataclasses.field(default_factory=WorldPromptsConfig)
    """training prompts"""
    num_candidates: int = 5
    """N videos per prompt (paper: 5)"""
    sampling: SamplingConfig = dataclasses.field(default_factory=lambda: SamplingConfig(
        height=64, width=64, num_frames=9, num_steps=20, guidance_scale=4.0))
    """sampling of candidates and of the report videos (the oracle bench's settings)"""
    scorer: Literal["reward_models", "world_oracle"] = "reward_models"
    """what scores candidates for the pairs: the RMs (HALO) or the oracle itself (an upper bound)"""
    reward_models: WorldRewardModelsConfig = dataclasses.field(default_factory=WorldRewardModelsConfig)
    """the video and patch reward models"""
    grid: list[int] = dataclasses.field(default_factory=lambda: [3, 3])
    """[h_n, w_n] of patch labels, patch rewards and the Gran-DPO latent grid"""
    patch_median: Literal["per_pair_max", "all_patches"] = "per_pair_max"
    """m_P of the pair rule (HALO Sec. 3.3): median of each pair's largest patch margin, or of every patch margin
    (the literal reading, which keeps ~all pairs); see :mod:`vidreward.halo.pairs`"""
    loss: GranDPOLossConfig = dataclasses.field(default_factory=GranDPOLossConfig)
    """Gran-DPO objective and ablations (loss.grid is set to ``grid``)"""
    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=1e-4))
    """Gran-DPO optimizer"""
    train: GranDPOLoopConfig = dataclasses.field(default_factory=GranDPOLoopConfig)
    """Gran-DPO loop length, batch, checkpoints, resume"""
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    """Gran-DPO metric sinks"""
    report: WorldReportConfig = dataclasses.field(default_factory=WorldReportConfig)
    """before/after evaluation"""

    def __post_init__(self) -> None:
        if self.num_candidates < 2 or self.prompts.num_prompts < 1:
            raise ValueError("num_candidates must be >= 2 and prompts.num_prompts >= 1")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be [h_n, w_n] with both >= 1, got {self.grid}")
        if self.generator.lora.rank <= 0:
            raise ValueError("generator.lora.rank must be > 0: Gran-DPO trains LoRA adapters")
        self.loss.grid = list(self.grid)
