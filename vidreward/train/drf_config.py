"""Typed config of ``vidreward train drf`` (defaults follow Diffusion-DRF Sec. 4.1 and Tables 5 and 7)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from vidreward.critics.config import CriticConfig
from vidreward.generators.config import GeneratorConfig, SamplingConfig
from vidreward.train.common_config import LoggingConfig, OptimConfig


def _drf_sampling() -> SamplingConfig:
    # paper: 25 denoising steps in training, K = 4, per-step checkpointing
    return SamplingConfig(num_steps=25, grad_steps=4, checkpoint_steps=True, height=288, width=512, num_frames=49)


@dataclasses.dataclass
class DRFDataConfig:
    """Training prompts: a JSONL of annotation records (see ``vidreward.annotate.records``) or the built-in world."""

    source: Literal["jsonl", "world"] = "jsonl"
    """'jsonl' reads ``path``; 'world' builds the world's records on first use (``vidreward.world.drf_data``)"""
    path: str = "data/records.jsonl"
    """JSONL with one record per line: caption, optional video (reference), decomposition, queries"""
    world_train_prompts: int = 64
    """source 'world': train-split prompts annotated (rendered reference + critic reference answers)"""
    world_records_dir: str = ""
    """source 'world': directory of the (resumable) world records; '' = ``<output_dir>/world_records``"""
    world_min_records: int = 1
    """source 'world': fewest all-favourable critic records accepted before ``world_fallback`` applies"""
    world_fallback: Literal["labels", "error"] = "labels"
    """source 'world', too few critic records: 'labels' fills the rejected prompts with the world's construction
    labels (the favourable answers of their clean reference renders); 'error' stops with the counts"""
    video_root: str | None = None
    """directory that relative ``video`` paths are resolved against; None = the JSONL's directory"""
    shuffle: bool = True
    """shuffle the record order each epoch (seeded by ``seed`` and the epoch, so resume is exact)"""
    validation_prompts: list[str] = dataclasses.field(default_factory=list)
    """prompts sampled every ``train.sample_every`` steps with fixed seeds (written as mp4/GIF)"""
    validation_seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    """noise seeds of the validation samples"""


@dataclasses.dataclass
class DRFRewardConfig:
    """Which DRF reward, over which dimensions, and how many frames the critic sees."""

    kind: Literal["rich", "vanilla"] = "rich"
    """'rich' (Eq. 3, TA/Phy/VQ reference answers) or 'vanilla' (Eq. 1, one Yes/No question)"""
    dimensions: list[str] = dataclasses.field(default_factory=lambda: ["ta", "phy", "vq"])
    """rich reward dimensions used (Table 4 ablations: e.g. [ta] or [ta, vq])"""
    weights: dict[str, float] = dataclasses.field(default_factory=lambda: {"ta": 1.0, "phy": 1.0, "vq": 1.0})
    """per-dimension loss weights w_d"""
    vanilla_variant: Literal["logprob", "logit_diff"] = "logprob"
    """Vanilla-DRF reward: log p(Yes) (Eq. 1) or log p(Yes) - log p(No)"""
    num_frames: int = 10
    """N_f: frames uniformly subsampled from the generated and the reference video (Sec. 4.1)"""
    use_reference: bool = True
    """give Phy/VQ queries the caption-matched reference frames (False = the 'w/o ref frames' ablation)"""
    handoff: bool = True
    """pixel-boundary hand-off: one query's VLM graph at a time (False = one joint graph, for comparison)"""


@dataclasses.dataclass
class DRFLoopConfig:
    """Length of the run, what is trained, and when to log, sample and checkpoint."""

    max_steps: int = 1000
    """optimizer steps to take"""
    batch_size: int = 1
    """videos per micro-batch per rank (paper: 1 per GPU)"""
    trainable: Literal["lora", "full"] = "full"
    """train the full DiT (paper) or LoRA adapters on it (generator.lora.rank > 0)"""
    log_every: int = 1
    """write metrics every N optimizer steps"""
    sample_every: int = 0
    """write validation samples every N steps (0 = only at the end when validation prompts are given)"""
    checkpoint_every: int = 50
    """write a checkpoint every N steps (and at the end); 0 = only at the end"""
    keep_last: int = 3
    """checkpoints to keep"""
    resume: str | None = None
    """'auto' (the last complete checkpoint in output_dir, if any), a checkpoint path, or None"""
    max_nonfinite_steps: int = 5
    """stop after this many consecutive steps with a non-finite loss or gradient"""


@dataclasses.dataclass
class DRFDistributedConfig:
    """Multi-process options (torchrun)."""

    fsdp: bool = False
    """shard the DiT per transformer block with FSDP2 (full fine-tuning of large DiTs; GPU path)"""
    fsdp_block_attr: str = "blocks"
    """attribute holding the DiT's transformer blocks ('blocks' for Wan, 'transformer_blocks' for CogVideoX)"""


@dataclasses.dataclass
class DRFReportConfig:
    """Before/after evaluation on held-out prompts, written as report.json + report.md in output_dir."""

    enabled: bool = False
    """evaluate before and after training and write the report (rank 0)"""
    eval_records: str = ""
    """JSONL of held-out records (caption, decomposition or queries, optional reference video); with
    data.source 'world', '' = the world's held-out split"""
    num_prompts: int = 16
    """held-out prompts evaluated (the first N records)"""
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    """noise seeds per prompt (the same before and after)"""
    oracle: bool = False
    """also score with the world oracle (world prompts only)"""
    heatmap_prompts: int = 2
    """prompts whose reward-gradient heatmaps are drawn before and after"""


@dataclasses.dataclass
class DRFConfig:
    """``vidreward train drf``: Diffusion-DRF / Vanilla-DRF fine-tuning of a video DiT."""

    output_dir: str = "runs/drf"
    """run directory: checkpoints, metrics.jsonl, tensorboard, samples, final weights"""
    seed: int = 0
    """seeds the data order and every sample's initial noise"""
    threads: int | None = None
    """torch CPU threads (``torch.set_num_threads``); None = torch's default"""
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    """the base video model (its DiT is trained; VAE and text encoder stay frozen)"""
    sampling: SamplingConfig = dataclasses.field(default_factory=_drf_sampling)
    """sampling during training: steps, CFG, shift, K (grad_steps), per-step checkpointing, decode chunks"""
    critic: CriticConfig = dataclasses.field(default_factory=CriticConfig)
    """the frozen VLM critic"""
    reward: DRFRewardConfig = dataclasses.field(default_factory=DRFRewardConfig)
    """reward kind, dimensions, weights, N_f"""
    data: DRFDataConfig = dataclasses.field(default_factory=DRFDataConfig)
    """training records and validation prompts"""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """optimizer settings"""
    train: DRFLoopConfig = dataclasses.field(default_factory=DRFLoopConfig)
    """loop length, trainable part, logging/sampling/checkpoint cadence, resume"""
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    """metric sinks"""
    distributed: DRFDistributedConfig = dataclasses.field(default_factory=DRFDistributedConfig)
    """torchrun options"""
    report: DRFReportConfig = dataclasses.field(default_factory=DRFReportConfig)
    """before/after evaluation and report"""

    def __post_init__(self) -> None:
        if self.train.trainable == "lora" and self.generator.lora.rank <= 0:
            raise ValueError("train.trainable is 'lora' but generator.lora.rank is 0; set generator.lora.rank")
        if self.sampling.grad_steps < 1:
            raise ValueError("sampling.grad_steps (K) must be >= 1 for DRF training")
        if self.reward.num_frames < 1:
            raise ValueError("reward.num_frames (N_f) must be >= 1")
        if self.report.enabled and not self.report.eval_records and self.data.source != "world":
            raise ValueError("report.enabled needs report.eval_records (a JSONL of held-out records)")
        if self.data.world_train_prompts < 1:
            raise ValueError("data.world_train_prompts must be >= 1")
