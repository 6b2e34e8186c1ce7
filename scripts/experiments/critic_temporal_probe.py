"""Can the world critic's vision tower see motion, physics and image-quality defects, and how does that depend on
the frames per temporal patch (``CriticArch.temporal_patch_size``)?

Qwen2.5-VL's vision tower attends within one temporal patch only, so with the standard 2 frames per patch it never
compares frames more than one apart: a jump or a shape change between patches, and the direction of a motion, are
left to the language model. This probe trains the critic's vision tower (the world critic's sizes, fresh weights)
plus a small head on video-level labels and reports held-out balanced accuracy per task (mean recall over the
task's classes; chance = 1 / classes), for each temporal patch size:

- ``physics``: clean / deformation / teleport / interpenetration (4 classes);
- ``quality``: clean / noise / blur / flicker (4);
- ``motion`` and ``shape`` of the object of one-object scenes (6 and 3; masked on two-object scenes).

The head is one transformer layer over the merged visual tokens with a learned embedding per token position
(t, row, col) and a CLS token, i.e. it can compare tokens across temporal patches the way the language model must.
Videos: train-split scenes, 10 frames, the critic's 84 x 84 input; each video's source is drawn uniformly from
clean, the three physics corruptions and the three pixel corruptions. Held-out: held-out-split scenes.

    .venv/bin/python scripts/experiments/critic_temporal_probe.py --temporal-patch 2 --steps 600 --out FILE.json

Session 12 (``--steps 2000 --eval-every 250 --lr 1e-3 --threads 1``, both arms side by side, stopped early): from
fresh weights neither arm learns any of the four tasks: balanced accuracy at chance (physics and quality 0.25, a
single class predicted; motion 0.17-0.20; shape 0.33-0.38) after 1500 steps (temporal patch 10, 0.2 s/step) and
500 steps (temporal patch 2, 0.4 s/step). The same tower with a linear head on mean-pooled tokens learns the
background colour in 70 steps (a throwaway pipeline check, not in this script), so these tasks need more than video-level labels on a fresh tower
at this budget; the next probe should start from an aligned tower (stage (i)), repeating its patch weights over time
for a larger temporal patch.
From the shipped critic's tower, frozen (``--init-critic vidreward/world/assets/critic --freeze-tower --steps 1500
--eval-every 250 --lr 1e-3``, temporal patch 2, 0.35 s/step beside other runs), the head reaches shape 0.63 and
quality 0.50 by step 1500, but physics stays at 0.25 and motion at 0.16-0.20 (chance). A likely reason for motion:
a straight motion travels ``TRAVEL`` = 0.25 of the frame over the whole clip, 21 of the 84 input pixels, less than
one merged token (28 px), so its direction lives below the token grid and the tokens of a 2-frame patch must encode
sub-token positions for any head (or the language model) to read it.
From the shipped critic, tower tuned too (``--init-critic vidreward/world/assets/critic --temporal-patch T --lr 3e-4
--eval-every 500``; T = 10 repeats the shipped 2-frame patch kernel 5 times over time, divided by 5, so a static clip
embeds as before), one run each, 1 thread:

| T | steps | s/step | physics | quality | motion | shape |
|---|---|---|---|---|---|---|
| 2 | 1500 | 0.39 | 0.29 | 0.49 | 0.43 | 0.74 |
| 2 | 2500 | 0.39 | 0.36 | 0.51 | 0.57 | 0.81 |
| 10 | 1500 | 0.19 | 0.37 | 0.49 | 0.37 | 0.53 |
| 10 | 2500 | 0.19 | 0.43 | 0.49 | 0.69 | 0.55 |
| 10 | 4000 | 0.19 | 0.63 | 0.52 | 0.93 | 0.71 |

(chance: physics and quality 0.25, motion 0.17, shape 0.33). Ten frames per patch halve the step time and learn motion
and physics faster per step (shape slower); quality stays at 0.5 in every arm.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time

import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.world.critic_align import merged_tokens
from vidreward.world.critic_build_config import ASSET_DIR
from vidreward.world.critic_curriculum import train_scene
from vidreward.world.critic_data import make_video
from vidreward.world.critic_model import CriticArch, build_critic_model
from vidreward.world.render import RenderConfig
from vidreward.world.scene import MOTIONS, SHAPES
from vidreward.world.splits import first_scene_of_split

SOURCES = ("clean", "deformation", "teleport", "interpenetration", "noise", "blur", "flicker")
TASKS = {"physics": ("clean", "deformation", "teleport", "interpenetration"),
         "quality": ("clean", "noise", "blur", "flicker"), "motion": MOTIONS, "shape": SHAPES}
N_FRAMES = 10


def sample(rng: random.Random, rcfg: RenderConfig, split: str) -> tuple[torch.Tensor, dict[str, int]]:
    if split == "train":
        seed, spec = train_scene(rng, rcfg.num_frames)
    else:
        seed, spec = first_scene_of_split(rng.randrange(40_000_000, 80_000_000), "heldout", rcfg.num_frames)
    source = rng.choice(SOURCES if len(spec.objects) > 1 else tuple(s for s in SOURCES if s != "interpenetration"))
    video = make_video(spec, source, seed, rcfg)  # [F, 3, H, W]
    one = len(spec.objects) == 1
    labels = {"physics": TASKS["physics"].index(source) if source in TASKS["physics"] else 0,
              "quality": TASKS["quality"].index(source) if source in TASKS["quality"] else 0,
              "motion": MOTIONS.index(spec.objects[0].motion) if one else -100,
              "shape": SHAPES.index(spec.objects[0].shape) if one else -100}
    return video, labels


class Head(torch.nn.Module):
    """CLS + learned per-position embeddings + one transformer layer + a linear classifier per task."""

    def __init__(self, dim: int, positions: int):
        super().__init__()
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = torch.nn.Parameter(torch.randn(1, positions, dim) * 0.02)
        self.layer = torch.nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
        self.out = torch.nn.ModuleDict({k: torch.nn.Linear(dim, len(v)) for k, v in TASKS.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:  # tokens [B, N, D]
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens + self.pos], dim=1)
        h = self.layer(x)[:, 0]
        return {k: head(h) for k, head in self.out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--temporal-patch", type=int, default=None, help="frames per temporal patch (default: the "
                    "start critic's, or 2)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--heldout", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-critic", help="start from this critic's weights (save_pretrained dir) instead of fresh "
                    "ones; a --temporal-patch that is a multiple of its own repeats its patch kernel over time")
    ap.add_argument("--freeze-tower", action="store_true", help="train the head only")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    start = VLMCritic.from_pretrained(args.init_critic) if args.init_critic else None
    start_tp = None if start is None else int(start.model.config.vision_config.temporal_patch_size)
    if start is None and args.temporal_patch is None:
        args.temporal_patch = 2
    if start is not None and args.temporal_patch in (None, start_tp):
        critic = start
        args.temporal_patch = start_tp
    else:
        arch = CriticArch(temporal_patch_size=args.temporal_patch)
        model, processor = build_critic_model(AutoTokenizer.from_pretrained(ASSET_DIR), arch, seed=args.seed)
        if start is not None:  # the start's weights, its patch kernel repeated over time (a static clip embeds alike)
            state = start.model.state_dict()
            key = "model.visual.patch_embed.proj.weight"
            reps, rest = divmod(args.temporal_patch, start_tp)
            if rest:
                raise ValueError(f"--temporal-patch {args.temporal_patch} is not a multiple of the start's {start_tp}")
            state[key] = state[key].repeat(1, 1, reps, 1, 1) / reps  # [D, 3, T, 14, 14]
            model.load_state_dict(state)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            processor.save_pretrained(tmp)
            critic = VLMCritic.from_pretrained(tmp)
    model = critic.model
    grid_t = -(-N_FRAMES // args.temporal_patch)
    per_video = grid_t * 9
    head = Head(model.config.vision_config.out_hidden_size, per_video)
    model.model.visual.requires_grad_(not args.freeze_tower)
    params = ([] if args.freeze_tower else list(model.model.visual.parameters())) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    rcfg = RenderConfig()
    held_rng = random.Random(f"probe-heldout-{args.seed}")
    held = [sample(held_rng, rcfg, "heldout") for _ in range(args.heldout)]

    def run(videos):
        tokens = merged_tokens(model, critic.encoder, videos, [N_FRAMES] * len(videos), critic.fps)  # [B*N, D]
        return head(tokens.view(len(videos), per_video, -1))

    def evaluate() -> dict[str, float]:
        """Balanced accuracy per task (mean over classes of the class's recall; chance = 1 / classes)."""
        pairs: dict[str, list[tuple[int, int]]] = {k: [] for k in TASKS}
        with torch.no_grad():
            for s in range(0, len(held), 32):
                part = held[s:s + 32]
                logits = run([v for v, _ in part])
                for k in TASKS:
                    pred = logits[k].argmax(1).tolist()
                    pairs[k] += [(lab[k], p) for (_, lab), p in zip(part, pred) if lab[k] >= 0]
        out = {}
        for k, got in pairs.items():
            recalls = [sum(p == c for t, p in got if t == c) / n for c in range(len(TASKS[k]))
                       if (n := sum(t == c for t, _ in got))]
            out[k] = round(sum(recalls) / len(recalls), 3)
        return out

    history, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        rng = random.Random(f"probe-train-{args.seed}-{step}")
        batch = [sample(rng, rcfg, "train") for _ in range(args.batch)]
        logits = run([v for v, _ in batch])
        loss = torch.zeros(())
        for k in TASKS:  # a batch without one-object scenes has no motion / shape targets (CE would be NaN)
            target = torch.tensor([lab[k] for _, lab in batch])
            if (target >= 0).any():
                loss = loss + torch.nn.functional.cross_entropy(logits[k], target, ignore_index=-100)
        if not torch.isfinite(loss):
            raise RuntimeError(f"step {step}: non-finite loss {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            acc = evaluate()
            history.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), "loss": loss.item(), **acc})
            print(json.dumps(history[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "history": history}, f, indent=2)


if __name__ == "__main__":
    main()
