"""``vidreward halo prompts|label-patches|sample|score|pairs|analyze``: the HALO data pipeline.

The full pipeline (each step resumable; presets under ``configs/halo/``)::

    vidreward halo prompts        --config configs/halo/prompts.yaml          # Fig. 8 + Eq. 10 -> prompts.jsonl
    vidreward halo sample         --config configs/halo/sample.yaml           # N=5 videos/prompt: latents, seeds, mp4
    vidreward halo label-patches  --config configs/halo/label_patches.yaml    # Fig. 9 teacher, 3x3 patches, 1-4
    vidreward train reward-model  --config configs/halo/reward_model_video.yaml / reward_model_patch.yaml
    vidreward halo score          --config configs/halo/score.yaml            # video + 3x3 patch rewards
    vidreward halo pairs          --scores S.jsonl --output P.jsonl [--patch-median per_pair_max|all_patches]
    vidreward train gran-dpo      --config configs/halo/gran_dpo.yaml         # Eqs. 7-9, LoRA
    vidreward halo analyze        --scores S.jsonl [--scores-after S2.jsonl] [--labels name=path ...] --output-dir D

In the procedural world the whole loop is one command (:mod:`vidreward.halo.world_loop`)::

    vidreward train gran-dpo --config configs/world/gran_dpo.yaml
"""

from __future__ import annotations

import argparse
from typing import Any

from vidreward.config import ConfigError, load_config
from vidreward.log import get_logger

log = get_logger(__name__)

#: subcommand -> (job name, help)
CONFIG_COMMANDS: dict[str, tuple[str, str]] = {
    "prompts": ("halo_prompts", "training prompts: Fig. 8 self-instruct + Eq. 10 similarity filter"),
    "label-patches": ("halo_label_patches", "teacher labels (Fig. 9) of every patch of a 3x3 grid, 0-10 -> 1-4"),
    "sample": ("halo_sample", "N candidate videos per prompt, keeping latents, seeds and mp4"),
    "score": ("halo_score", "video and patch rewards of every candidate"),
}


def _run_config_command(args: argparse.Namespace) -> int:
    command = args.halo_command
    job, _ = CONFIG_COMMANDS[command]
    _, cfg = load_config(args.config, args.overrides, job=job)
    try:
        summary = run_job(command, cfg)
    except (FileNotFoundError, ValueError) as err:
        log.error("halo %s: %s", command, err)
        return 1
    log.info("halo %s: %s", command, {k: v for k, v in summary.items() if not isinstance(v, dict | list)})
    return 0


def run_job(command: str, cfg: Any) -> dict[str, Any]:
    """Run one config-driven subcommand on a loaded config; return its summary."""
    if command == "prompts":
        from vidreward.halo.prompts_stage import run_prompts

        return run_prompts(cfg)
    if command == "label-patches":
        from vidreward.halo.label_patches import run_label_patches

        return run_label_patches(cfg)
    if command == "sample":
        from vidreward.halo.sample import run_sample

        return run_sample(cfg)
    if command == "score":
        from vidreward.halo.score import run_score

        return run_score(cfg)
    raise ValueError(f"unknown halo command {command!r}")


def _run_pairs(args: argparse.Namespace) -> int:
    from vidreward.halo.pairs_stage import run_pairs

    try:
        run_pairs(args.scores, args.output, patch_median=args.patch_median)
    except (FileNotFoundError, ValueError) as err:
        log.error("halo pairs: %s", err)
        return 1
    return 0


def _parse_labels(items: list[str]) -> dict[str, str]:
    sources = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--labels {item!r}: expected name=path, e.g. teacher=outputs/halo/patch_labels.jsonl")
        if name in sources:
            raise ConfigError(f"--labels: source name {name!r} given twice")
        sources[name] = path
    return sources


def _run_analyze(args: argparse.Namespace) -> int:
    from vidreward.halo.analyze import run_analyze

    try:
        run_analyze(args.output_dir, args.scores, args.scores_after, _parse_labels(args.labels))
    except (FileNotFoundError, ValueError) as err:
        log.error("halo analyze: %s", err)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``halo`` subcommands."""
    from vidreward.cli import add_config_arguments
    from vidreward.halo.pairs import PATCH_MEDIANS

    for name, (_, help_text) in CONFIG_COMMANDS.items():
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        add_config_arguments(parser)
        parser.set_defaults(func=_run_config_command)

    pairs = subparsers.add_parser("pairs", help="median-margin Gran-DPO pairs from a scores table",
                                  description="median-margin Gran-DPO pairs from a scores table (HALO Sec. 3.3)")
    pairs.add_argument("--scores", required=True, help="scores JSONL of `vidreward halo score`")
    pairs.add_argument("--output", required=True, help="pairs JSONL to write (+ .summary.json next to it)")
    pairs.add_argument("--patch-median", choices=PATCH_MEDIANS, default="per_pair_max",
                       help="m_P of the patch rule: median of each pair's largest patch margin (default) or of "
                            "every patch margin (the literal reading; keeps ~all pairs), see vidreward.halo.pairs")
    pairs.set_defaults(func=_run_pairs)

    analyze = subparsers.add_parser("analyze", help="Spearman (Table 3), preference consistency (Fig. 4a), "
                                    "patch reward distributions (Fig. 5): JSON + PNG")
    analyze.add_argument("--scores", default=None, help="scores JSONL (before fine-tuning)")
    analyze.add_argument("--scores-after", default=None, help="scores JSONL after fine-tuning (Fig. 5b)")
    analyze.add_argument("--labels", action="append", default=[], metavar="NAME=PATH",
                         help="a patch label source (label-patches or scores JSONL); repeat, >= 2 for Spearman")
    analyze.add_argument("--output-dir", required=True, help="where analysis.json and the PNGs go")
    analyze.set_defaults(func=_run_analyze)
