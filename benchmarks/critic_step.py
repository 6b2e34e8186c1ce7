"""Time of one world-critic instruct step: one padded batch through the full logits vs the build's fast path.

    .venv/bin/python benchmarks/critic_step.py [--repeats 5] [--batch 32] [--threads 1]

On the shipped world critic and fixed batches of the mixed curriculum phase (every dimension, N_f drawn like the
build), it times forward + backward (vision tower tuned, as in the curriculum's later phases) for
- "full": one right-padded batch, the model's ``[B, L, V]`` logits (the build's path before session 12);
- "answer-only": one padded batch, the head applied at the answer targets only (``critic_batch.answer_logits``);
- "grouped": answer-only logits on per-dimension sub-batches (``critic_batch.grouped_loss``, the build's path).
The three losses are checked equal. Settings are interleaved within each repeat and the median counts, so load from
other processes hits all of them alike. Peak memory: ``tracemalloc`` does not see torch's allocator, so each
setting runs two steps in a fresh subprocess that resets the kernel's RSS high-water mark after loading the model and
the batch (``/proc/self/clear_refs``) and reports VmHWM minus the RSS at the reset: the step's own peak. Prints a table
and writes benchmarks/results/critic_step.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidreward.critics.vlm import VLMCritic  # noqa: E402
from vidreward.world.critic_batch import (  # noqa: E402
    answer_logits,
    encode_batch,
    grouped_loss,
    video_features,
    weighted_nll,
)
from vidreward.world.critic_build_config import ASSET_DIR  # noqa: E402
from vidreward.world.critic_curriculum import curriculum_example  # noqa: E402
from vidreward.world.render import RenderConfig  # noqa: E402

SETTINGS = ("full", "answer-only", "grouped")


def make_batch(size: int, repeat: int):
    rcfg = RenderConfig()
    pairs = [curriculum_example(random.Random(f"bench-{repeat}-{i // 2}"), i, 99, 0.5, rcfg, 0.0, 0.5)
             for i in range(size)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def loss_of(setting: str, critic: VLMCritic, examples, n_frames) -> torch.Tensor:
    if setting == "grouped":
        return grouped_loss(critic, examples, n_frames, 20.0, tune_vision=True)[0]
    batch = encode_batch(critic, examples, n_frames, 20.0)
    feats = video_features(critic.model, batch)
    if setting == "answer-only":
        return weighted_nll(answer_logits(critic.model, batch, feats), batch)
    logits = critic.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          mm_token_type_ids=batch.mm_token_type_ids, video_grid_thw=batch.video_grid_thw,
                          second_per_grid_ts=batch.second_per_grid_ts, mm_encoder_outputs={"video": feats},
                          use_cache=False).logits.float()  # [B, L, V]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.labels.clamp_min(0), reduction="none")
    return (nll * batch.weights).sum() / batch.weights.sum()


def timed_step(setting, critic, examples, n_frames) -> tuple[float, float]:
    critic.model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    loss = loss_of(setting, critic, examples, n_frames)
    loss.backward()
    return time.perf_counter() - t0, loss.item()


def load_critic() -> VLMCritic:
    critic = VLMCritic.from_pretrained(ASSET_DIR)
    critic.model.requires_grad_(True)
    return critic


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss_child(setting: str, batch: int, threads: int) -> None:
    """Print the step's peak RSS in MB above the RSS once the model and the batch are loaded."""
    torch.set_num_threads(threads)
    critic = load_critic()
    examples, n_frames = make_batch(batch, 0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = _status_mb("VmRSS")
    for _ in range(2):
        timed_step(setting, critic, examples, n_frames)
    print(_status_mb("VmHWM") - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/critic_step.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        peak_rss_child(args.child, args.batch, args.threads)
        return
    torch.set_num_threads(args.threads)
    critic = load_critic()
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for r in range(args.repeats):
        examples, n_frames = make_batch(args.batch, r)
        losses = {}
        for setting in SETTINGS:
            seconds, losses[setting] = timed_step(setting, critic, examples, n_frames)
            times[setting].append(seconds)
        if max(losses.values()) - min(losses.values()) > 1e-4 * abs(losses["full"]):
            raise RuntimeError(f"repeat {r}: the settings' losses differ: {losses}")

    def rss(setting: str) -> float:
        out = subprocess.run([sys.executable, __file__, "--child", setting, "--batch", str(args.batch),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    rows = []
    for setting in SETTINGS:
        median = statistics.median(times[setting])
        rows.append({"setting": setting, "median_s": median, "speedup": statistics.median(times["full"]) / median,
                     "step_peak_rss_mb": rss(setting), "times_s": times[setting]})
    print(f"critic instruct step, batch {args.batch}, {args.threads} thread(s), {args.repeats} repeats (median)")
    print(f"{'setting':<12} {'seconds':>8} {'speed-up':>9} {'step peak RSS MB':>17}")
    for row in rows:
        print(f"{row['setting']:<12} {row['median_s']:>8.2f} {row['speedup']:>8.2f}x {row['step_peak_rss_mb']:>17.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"batch": args.batch, "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
