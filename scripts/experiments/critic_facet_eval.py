"""Held-out Yes/No accuracy of a world critic per TA facet and per dimension, frames in order and shuffled.

The build's own evaluation (``critic_batch.evaluate`` on ``critic_data.held_out_examples``) draws a random facet per
TA example, so it cannot say which facets a critic has learnt. This script asks every facet the same number of
balanced questions on held-out scenes (Fig. 15 template) and prints one row per facet and per dimension; the
shuffled column rolls the videos within each row, so a critic that reads the video drops to about 0.5 there.
For each TA facet it also asks the two sides of the comparison as keyed auxiliary answers (:mod:`critic_aux`,
``Video <facet>: <value>`` / ``Question <facet>: <value>``) and prints how often the value word is the critic's top-1
token (``critic_batch.value_accuracy``): a facet read on both sides but answered at chance lacks the comparison.
Last come the Vanilla, VQ and Phy rows per video source (the corruption that made the video, ``CriticExample.source``)
over ``--per-source`` examples of each dimension: a Vanilla critic that only catches the background and lighting edits,
or a VQ critic that only catches flicker, shows up there and not in the dimension's mean.

    .venv/bin/python scripts/experiments/critic_facet_eval.py [--critic DIR] [--per-row 48] [--per-source 96]
        [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.world import critic_data as cd
from vidreward.world.critic_aux import aux_example
from vidreward.world.critic_batch import evaluate, value_accuracy
from vidreward.world.critic_build_config import ASSET_DIR
from vidreward.world.render import RenderConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--critic", default=str(ASSET_DIR), help="critic save_pretrained dir (default: shipped)")
    parser.add_argument("--per-row", type=int, default=48, help="balanced examples per facet / dimension")
    parser.add_argument("--per-source", type=int, default=96,
                        help="balanced examples per dimension for the per-source rows (0: none)")
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rcfg = RenderConfig()
    critic = VLMCritic.from_pretrained(args.critic)
    rows: dict[str, dict[str, float]] = {}
    for k, facet in enumerate(cd.TA_FACETS):
        examples = cd.held_out_examples(args.per_row, rcfg, seed0=cd.HELD_OUT_SEED0 + 100_000 * (k + 1),
                                        dimensions=("ta",), facet=facet)
        rows[f"ta / {facet}"] = {
            "acc": evaluate(critic, examples)["ta"], "shuffled": evaluate(critic, examples, shuffle=True)["ta"],
            "reads_video": value_accuracy(critic, [aux_example(ex, rcfg, video_side=True) for ex in examples]),
            "reads_question": value_accuracy(critic, [aux_example(ex, rcfg, video_side=False) for ex in examples])}
    # the dimension rows are the build's own held-out set (at --per-row 48 exactly the one that picked the build's
    # export), so unlike the facet rows above they are not an independent measure of an exported critic
    held = cd.held_out_examples(args.per_row, rcfg)
    acc, shuffled = evaluate(critic, held), evaluate(critic, held, shuffle=True)
    rows.update({dim: {"acc": acc[dim], "shuffled": shuffled[dim]} for dim in acc})
    for dim in ("vanilla", "vq", "phy") if args.per_source else ():
        examples = cd.held_out_examples(args.per_source, rcfg, seed0=cd.HELD_OUT_SEED0 + 5_000_000, dimensions=(dim,))
        for source in sorted({ex.source for ex in examples}):
            part = [ex for ex in examples if ex.source == source]
            rows[f"{dim} / {source} (n={len(part)})"] = {"acc": evaluate(critic, part)[dim], "n": len(part)}
    width = max(map(len, rows))
    print(f"{'row':<{width}}  acc    shuffled  reads video  reads question   ({args.critic}, {args.per_row} per row)")
    for name, row in rows.items():
        sides = f"  {row['reads_video']:.3f}        {row['reads_question']:.3f}" if "reads_video" in row else ""
        shuffled = f"{row['shuffled']:.3f}" if "shuffled" in row else "  -  "
        print(f"{name:<{width}}  {row['acc']:.3f}  {shuffled}   {sides}")
    if args.out:
        Path(args.out).write_text(json.dumps({"critic": args.critic, "per_row": args.per_row, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
