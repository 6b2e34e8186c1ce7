"""Peak memory of one Gran-DPO LoRA step vs one plain LoRA training step on the same model and batch (CPU).

    .venv/bin/python benchmarks/gran_dpo_memory.py            # writes benchmarks/results/gran_dpo_memory.json

Each measurement runs in a fresh subprocess (``--child MODE``) so no allocator state is shared:

* ``plain``: the flow-matching MSE on the 2B latents of B pairs (winners and losers), backward, AdamW step;
* ``gran_dpo``: the trainer's own ``pair_errors`` (reference = same DiT with adapters disabled, no_grad, then the
  policy) + ``gran_dpo_loss`` on the same latents, noise and timesteps, backward, AdamW step;
* ``gran_dpo_copy``: the same, but the reference is a *second copy* of the DiT (what the trainer avoids), to
  show that the measurement sees a copy of the weights.

Memory is read from the kernel: ``peak_mb`` is the process's peak RSS (``VmHWM``, what ``ru_maxrss``
reports, reset with ``/proc/self/clear_refs`` once the libraries are imported) minus the RSS at that point, so it
counts the models, the optimizer state and the two training steps, not torch/diffusers themselves.
Two DiT sizes: ``tiny`` (the test model's DiT, where the weights are negligible and activations
dominate; latent 16x5x32x32) and ``wide`` (a 6-block, 768-wide Wan DiT, ~57 M parameters, with a small latent
16x2x16x16 so the weights dominate and a second copy would show). Both run ``--pairs`` pairs, LoRA ``--rank``
on the attention projections, one warm-up step, then the measured step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script from anywhere
MODES = ("plain", "gran_dpo", "gran_dpo_copy")
#: latent [C, T', H', W'] per DiT size: tiny is activation-dominated, wide is weight-dominated
LATENT_DEFAULTS = {"tiny": [16, 5, 32, 32], "wide": [16, 2, 16, 16]}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _wide_transformer():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=64, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=3072, num_layers=6, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )


def child(mode: str, scale: str, model_dir: str, pairs: int, latent: list[int], rank: int) -> dict:
    """One measurement in this (fresh) process."""
    import copy

    import torch

    # libraries are loaded before the baseline, so peak_mb counts the models and the steps only
    from diffusers import AutoencoderKLWan, WanTransformer3DModel  # noqa: F401
    from transformers import UMT5EncoderModel  # noqa: F401

    from vidreward.generators.base import PromptEmbeds
    from vidreward.generators.config import GeneratorConfig, LoraConfig
    from vidreward.generators.registry import load_generator
    from vidreward.halo.grid import patch_mean
    from vidreward.lora import attach_lora, lora_parameters
    from vidreward.losses.gran_dpo import PairErrors, gran_dpo_loss
    from vidreward.train.gran_dpo import pair_errors
    from vidreward.train.gran_dpo_data import PairBatch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rss_imports = _status_kb("VmRSS")
    reset = _reset_peak()
    gen = load_generator(GeneratorConfig(path=model_dir, max_sequence_length=16))
    if scale == "wide":
        gen.transformer = _wide_transformer().eval()
    reference = copy.deepcopy(gen.transformer).requires_grad_(False) if mode == "gran_dpo_copy" else None
    attach_lora(gen.transformer, LoraConfig(rank=rank, alpha=float(rank), init_seed=0))
    params = lora_parameters(gen.transformer)
    dit_params = sum(p.numel() for n, p in gen.transformer.named_parameters() if "lora_" not in n)
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    g = torch.Generator().manual_seed(0)
    batch = PairBatch(torch.randn(pairs, *latent, generator=g), torch.randn(pairs, *latent, generator=g),
                      ["a red ball moves left"] * pairs)
    noise = torch.randn(pairs, *latent, generator=g)
    timesteps = torch.randint(0, 1000, (pairs,), generator=g).float()
    with torch.no_grad():
        embeds = gen.encode_prompts(batch.prompts)
    grid = (3, 3)
    ones = torch.ones(pairs)
    signs = torch.ones(pairs, *grid)

    latents2 = torch.cat([batch.winners, batch.losers])  # [2B, C, T', H', W']
    noise2, t2 = torch.cat([noise, noise]), torch.cat([timesteps, timesteps])
    e2 = PromptEmbeds(torch.cat([embeds.cond, embeds.cond]))

    def step() -> float:
        if mode == "plain":
            loss = gen.prediction_error(latents2, noise2, t2, e2).mean()
        elif mode == "gran_dpo":
            video, patch = pair_errors(gen, batch, noise, timesteps, embeds, grid)
            loss = gran_dpo_loss(video, patch, ones, signs, signs, beta=2.5, num_timesteps=1000.0).loss
        else:  # reference = a second DiT copy, policy = the LoRA'd DiT
            policy = gen.transformer
            gen.transformer = reference
            with torch.no_grad():
                ref = gen.prediction_error(latents2, noise2, t2, e2)  # [2B, C, T', H', W']
                ref_v, ref_p = ref.flatten(1).mean(1), patch_mean(ref, grid)
                del ref
            gen.transformer = policy
            pol = gen.prediction_error(latents2, noise2, t2, e2)
            pol_v, pol_p = pol.flatten(1).mean(1), patch_mean(pol, grid)
            b = pairs
            video = PairErrors(pol_v[:b], pol_v[b:], ref_v[:b], ref_v[b:])
            patch = PairErrors(pol_p[:b], pol_p[b:], ref_p[:b], ref_p[b:])
            loss = gran_dpo_loss(video, patch, ones, signs, signs, beta=2.5, num_timesteps=1000.0).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    step()  # warm-up (lazy buffers, AdamW state), then the measured step
    loss = step()
    peak = _status_kb("VmHWM")
    return {"mode": mode, "scale": scale, "dit_parameters": dit_params, "lora_parameters": sum(p.numel() for p in params),
            "peak_reset": reset, "peak_mb": (peak - rss_imports) / 1024, "rss_after_imports_mb": rss_imports / 1024,
            "loss": loss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="preference pairs per step (2B latents)")
    parser.add_argument("--latent", type=int, nargs=4, default=None, metavar=("C", "T", "H", "W"),
                        help="latent size (default: tiny 16 5 32 32, activation-heavy; wide 16 2 16 16)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--scales", nargs="+", default=["tiny", "wide"], choices=["tiny", "wide"])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gran_dpo_memory.json"))
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--scale", default="tiny", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.scale, args.model_dir, args.pairs, args.latent, args.rank)
        sys.stdout.write(json.dumps(result) + "\n")
        return 0

    from vidreward.generators.tiny import build_tiny_wan

    model_dir = build_tiny_wan(Path(tempfile.gettempdir()) / "vidreward_bench_tiny_wan")
    runs = []
    for scale in args.scales:
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", mode, "--scale", scale, "--model-dir", str(model_dir),
                   "--pairs", str(args.pairs), "--rank", str(args.rank),
                   "--latent", *map(str, args.latent or LATENT_DEFAULTS[scale])]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO),
                                  "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            sys.stderr.write(f"{scale:5s} {mode:14s} peak {runs[-1]['peak_mb']:8.1f} MB\n")
    summary = {}
    for scale in args.scales:
        by = {r["mode"]: r for r in runs if r["scale"] == scale}
        summary[scale] = {f"{mode}_vs_plain": by[mode]["peak_mb"] / by["plain"]["peak_mb"]
                          for mode in ("gran_dpo", "gran_dpo_copy")}
    result = {"command": "python benchmarks/gran_dpo_memory.py", "pairs": args.pairs,
              "latent": {scale: args.latent or LATENT_DEFAULTS[scale] for scale in args.scales},
              "lora_rank": args.rank, "runs": runs, "ratios": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
