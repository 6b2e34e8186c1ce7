"""Experiment: does an exponential moving average of the critic's weights score higher than the weights themselves?

A build's held-out evaluations move by +-0.05 in mean from one evaluation to the next during the mixed phase
(session 19's build J: 0.63-0.71 over steps 6400-7806), and the export is the single best of them. This continues
a critic's training with the stage (iii) mixed phase of a recipe (vision tower frozen, the text model trained with a
fresh AdamW at ``text_lr``) and keeps an EMA of the trained weights, theta_ema <- d * theta_ema + (1 - d) * theta
after every step. Every ``--eval-every`` steps both are scored on the build's held-out set
(``critic_data.held_out_examples``, the set that picks a build's export); at the end both are also scored on the
issue-6 test batch (``tests/test_world_critic.py``'s own ``_accuracy``; never used for a choice here).

    .venv/bin/python scripts/experiments/critic_ema_probe.py --critic DIR --minutes 20 --decay 0.99 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from critic_test_batch import gate_module, gate_scores  # this script's directory

from vidreward.critics.vlm import VLMCritic
from vidreward.world import critic_data as cd
from vidreward.world.build_critic import trainable_text_parameters
from vidreward.world.critic_batch import evaluate, grouped_loss
from vidreward.world.critic_build_config import joint_recipe
from vidreward.world.critic_curriculum import curriculum_example
from vidreward.world.render import RenderConfig


def _swap(params: list[torch.nn.Parameter], other: list[torch.Tensor]) -> None:
    """Exchange the values of ``params`` and ``other`` in place."""
    with torch.no_grad():
        for p, o in zip(params, other):
            tmp = p.detach().clone()
            p.copy_(o)
            o.copy_(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--critic", required=True, help="critic save_pretrained dir to continue from")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock minutes of training")
    parser.add_argument("--decay", type=float, default=0.99, help="EMA decay d per step")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSON of the evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg, rcfg = joint_recipe(threads=args.threads), RenderConfig()
    critic = VLMCritic.from_pretrained(args.critic)
    model = critic.model
    model.model.visual.requires_grad_(False)
    params = trainable_text_parameters(model)
    ema = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=0.0)
    held = cd.held_out_examples(cfg.held_out_per_dimension, rcfg)
    mixed = len(cfg.phases)
    history, step, t0 = [], 0, time.time()
    while True:
        if step % args.eval_every == 0 or time.time() - t0 >= args.minutes * 60:
            raw = evaluate(critic, held)
            _swap(params, ema)
            averaged = evaluate(critic, held)
            _swap(params, ema)
            history.append({"step": step, "raw": raw, "ema": averaged})
            print(f"step {step:5d} raw {sum(raw.values()) / 4:.3f} {raw} | ema {sum(averaged.values()) / 4:.3f} "
                  f"{averaged}", flush=True)
            if time.time() - t0 >= args.minutes * 60:
                break
        pairs = [curriculum_example(random.Random(f"ema-probe-{step}-{i // 2}"), i, mixed, cfg.short_question_share,
                                    rcfg, cfg.format_share, cfg.aux_share, cfg.phases, cfg.aux_check_share,
                                    cfg.replay_share, cfg.vanilla_check_share) for i in range(cfg.batch_size)]
        loss, _ = grouped_loss(critic, [p[0] for p in pairs], [p[1] for p in pairs], cfg.decision_weight, False,
                               cfg.scored_decision_only)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(args.decay).add_(p.detach(), alpha=1 - args.decay)
        step += 1
    gate = gate_module()
    test_batch = cd.held_out_examples(gate.PER_DIMENSION, n_frames=gate.N_FRAMES, seed0=gate.TEST_SEED0)
    final = {"raw": gate_scores(gate, critic, test_batch)}
    _swap(params, ema)
    final["ema"] = gate_scores(gate, critic, test_batch)
    print(f"test batch: raw {final['raw']} | ema {final['ema']}")
    Path(args.out).write_text(json.dumps({"args": vars(args), "history": history, "test_batch": final}, indent=1))


if __name__ == "__main__":
    main()
