"""The Gran-DPO trainer on a tiny Wan: reference = base DiT, hand-computed first-step losses (with ablations),
only LoRA trains, NaN guard, exact resume after SIGKILL, Wan's shifted timestep grid, input errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.gran_dpo_fixtures import LATENT, PAIRS, PROMPTS, tiny_config, write_data
from vidreward.config import ConfigError, to_dict
from vidreward.generators.config import GeneratorConfig, LoraConfig
from vidreward.generators.registry import load_generator
from vidreward.generators.tiny import build_tiny_wan
from vidreward.halo.candidate_latents import (
    candidate_latent_path,
    load_candidate_latents,
)
from vidreward.halo.grid import patch_mean
from vidreward.halo.pairs import PreferencePair
from vidreward.lora import lora_parameters
from vidreward.train import gran_dpo as gd
from vidreward.train import gran_dpo_data
from vidreward.train.checkpoint import list_checkpoints, load_checkpoint
from vidreward.train.guards import NonFiniteError

REPO = Path(__file__).resolve().parents[1]
LOG2 = math.log(2.0)
# (video_loss, patch_loss) of step 1 per ablation, from the sums noted next to PAIRS (tests/gran_dpo_fixtures.py)
EXPECTED = {
    "full": ((0.5 + 1.0 + 0.0) / 3 * LOG2, (4.5 + 9 + 1.5) / 3 * LOG2),
    "no_patch": ((0.5 + 1.0 + 0.0) / 3 * LOG2, 0.0),
    "no_video": (0.0, (4.5 + 9 + 1.5) / 3 * LOG2),
    "no_weights": ((1 + 1 + 0) / 3 * LOG2, (6 + 9 + 2) / 3 * LOG2),
}
ABLATIONS = {"full": {}, "no_patch": {"loss.use_patch_dpo": False}, "no_video": {"loss.use_video_dpo": False},
             "no_weights": {"loss.use_pair_weights": False}}


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    return build_tiny_wan(tmp_path_factory.getbasetemp() / "tiny_wan_gdpo")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("gdpo_data"))


def _capture_generator(monkeypatch):
    holder = {}
    real = gd.load_generator

    def load(cfg):
        gen = holder["gen"] = real(cfg)
        holder["before"] = {k: v.detach().clone() for k, v in gen.transformer.state_dict().items()}
        holder["frozen"] = {k: v.detach().clone() for m in (gen.vae, gen.text_encoder)
                            for k, v in m.state_dict().items()}
        return gen

    monkeypatch.setattr(gd, "load_generator", load)
    return holder


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_reference_errors_are_the_base_model_and_policy_errors_the_lora_model(wan, pairs):
    gen = load_generator(GeneratorConfig(path=str(wan), max_sequence_length=16, lora=LoraConfig(rank=4, init_seed=0)))
    with torch.no_grad():  # move B away from 0 so the adapters matter
        for p in lora_parameters(gen.transformer):
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    base = load_generator(GeneratorConfig(path=str(wan), max_sequence_length=16))  # fresh, no LoRA
    chosen = [PreferencePair.from_dict(json.loads(line)) for line in pairs.read_text().splitlines()]
    batch = gran_dpo_data.load_pair_batch(chosen, pairs.parent / "latents")
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(3, *LATENT, generator=g), torch.tensor([50.0, 400.0, 900.0])
    grid = (3, 3)
    embeds = gen.encode_prompts(batch.prompts)
    video, patch = gd.pair_errors(gen, batch, noise, t, embeds, grid)
    assert video.policy_winner.requires_grad and not video.ref_winner.requires_grad

    def errors(model, latents):
        e = model.prediction_error(latents, noise, t, model.encode_prompts(batch.prompts))  # [B, C, T', H', W']
        return e.flatten(1).mean(1), patch_mean(e, grid)

    with torch.no_grad():
        for latents, ref_v, ref_p, pol_v, pol_p in (
            (batch.winners, video.ref_winner, patch.ref_winner, video.policy_winner, patch.policy_winner),
            (batch.losers, video.ref_loser, patch.ref_loser, video.policy_loser, patch.policy_loser),
        ):
            base_v, base_p = errors(base, latents)
            torch.testing.assert_close(ref_v, base_v, rtol=0, atol=1e-6)
            torch.testing.assert_close(ref_p, base_p, rtol=0, atol=1e-6)
            lora_v, lora_p = errors(gen, latents)
            torch.testing.assert_close(pol_v, lora_v, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(pol_p, lora_p, rtol=1e-5, atol=1e-6)
            assert (pol_v - base_v).abs().min() > 1e-4  # the adapters change the policy
    # video MSE = patch MSEs weighted by patch size (rows 2, 2, 4 x cols 2, 2, 2)
    sizes = torch.tensor([[4.0, 4, 4], [4, 4, 4], [8, 8, 8]])
    torch.testing.assert_close((patch.ref_winner * sizes).sum((1, 2)) / 48, video.ref_winner)


def test_steps_train_lora_only_and_first_step_matches_hand_computed_loss(wan, pairs, tmp_path, monkeypatch):
    holder = _capture_generator(monkeypatch)
    summary = gd.train(tiny_config(wan, pairs, tmp_path / "run"))
    assert summary["step"] == 2 and summary["skipped_nonfinite"] == 0
    first, second = _metrics(tmp_path / "run")
    video_loss, patch_loss = EXPECTED["full"]
    assert first["video_loss"] == pytest.approx(video_loss, abs=1e-6)
    assert first["patch_loss"] == pytest.approx(patch_loss, abs=1e-6)
    assert first["loss"] == pytest.approx(video_loss + patch_loss, abs=1e-6)
    assert first["reward_winner"] == first["reward_loser"] == 0.0 and first["accuracy"] == 0.0
    for key in ("reward_margin", "patch_reward_winner", "patch_reward_loser", "grad_norm", "step_time_s",
                "peak_memory_mb"):
        assert math.isfinite(second[key]), key
    assert second["reward_winner"] != 0.0 and first["grad_norm"] > 0
    gen = holder["gen"]
    changed = [k for k, v in gen.transformer.state_dict().items() if not torch.equal(v, holder["before"][k])]
    assert changed and all("lora_" in k for k in changed), changed[:5]
    for module in (gen.vae, gen.text_encoder):
        for k, v in module.state_dict().items():
            assert torch.equal(v, holder["frozen"][k]), k
    assert (tmp_path / "run" / "final" / "pytorch_lora_weights.safetensors").is_file()


@pytest.mark.parametrize("ablation", ["no_patch", "no_video", "no_weights"])
def test_ablation_switches_give_the_hand_computed_first_step_loss(wan, pairs, tmp_path, ablation):
    cfg = tiny_config(wan, pairs, tmp_path / ablation, **{"train.max_steps": 1, **ABLATIONS[ablation]})
    gd.train(cfg)
    (first,) = _metrics(tmp_path / ablation)
    video_loss, patch_loss = EXPECTED[ablation]
    assert first["video_loss"] == pytest.approx(video_loss, abs=1e-6)
    assert first["patch_loss"] == pytest.approx(patch_loss, abs=1e-6)


def test_nan_step_is_skipped_and_weights_are_kept(wan, tmp_path):
    data = write_data(tmp_path / "data", pairs=[PAIRS[1], PAIRS[0]], nan_candidates=(("p0", "c2"),))
    cfg = tiny_config(wan, data, tmp_path / "nan", **{"train.batch_size": 1})
    summary = gd.train(cfg)
    assert summary["skipped_nonfinite"] == 1  # step 1 (the NaN pair) skipped, step 2 applied
    step1, step2 = (load_checkpoint(p).trainable for p in list_checkpoints(tmp_path / "nan" / "checkpoints"))
    assert all(torch.equal(v, torch.zeros_like(v)) for k, v in step1.items() if "lora_B" in k)  # untouched init
    assert any(not torch.equal(v, step1[k]) for k, v in step2.items())
    assert all(torch.isfinite(v).all() for v in step2.values())

    with pytest.raises(NonFiniteError):
        gd.train(tiny_config(wan, data, tmp_path / "nan2", **{"train.batch_size": 1, "data.shuffle": False,
                                                               "train.max_nonfinite_steps": 1}))


def test_exact_resume_after_sigkill(wan, pairs, tmp_path):
    over = {"train.batch_size": 1, "data.shuffle": True, "train.keep_last": 3}
    cfg = tiny_config(wan, pairs, tmp_path / "killed", **{**over, "train.max_steps": 500})
    data = to_dict(cfg)
    data["job"] = "train_gran_dpo"
    preset = tmp_path / "killed.yaml"
    preset.write_text(yaml.safe_dump(data))
    env = dict(os.environ, VIDREWARD_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "vidreward", "train", "gran-dpo", "--config", str(preset)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = tmp_path / "killed" / "checkpoints" / "step-000003" / "state.json"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    last = list_checkpoints(tmp_path / "killed" / "checkpoints")[-1]
    k = load_checkpoint(last).state.step
    assert 3 <= k < 500
    n = k + 3

    resumed = gd.train(tiny_config(wan, pairs, tmp_path / "killed", **{**over, "train.max_steps": n,
                                                                         "train.resume": str(last)}))
    assert resumed["step"] == n
    full = gd.train(tiny_config(wan, pairs, tmp_path / "full", **{**over, "train.max_steps": n}))
    assert full["step"] == n
    got = load_checkpoint(list_checkpoints(tmp_path / "killed" / "checkpoints")[-1]).trainable
    want = load_checkpoint(list_checkpoints(tmp_path / "full" / "checkpoints")[-1]).trainable
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k_, v in want.items() if "lora_B" in k_)


def test_shifted_timesteps_are_wans_training_grid():
    """'shifted' draws exactly the timesteps FlowMatchEulerDiscreteScheduler trains on; 'uniform' draws k itself."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    grid = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0).timesteps  # [1000], noisiest first
    for seed in range(20):
        noise_u, k = gd.draw_noise_and_timestep(torch.Generator().manual_seed(seed), torch.Size([2]), 1000,
                                                "uniform", None)
        noise_s, t = gd.draw_noise_and_timestep(torch.Generator().manual_seed(seed), torch.Size([2]), 1000,
                                                "shifted", 3.0)
        assert torch.equal(noise_u, noise_s) and float(k) == int(k) and 0 <= k < 1000
        # index k of the uniform grid k/1000 maps to grid[999 - k] once shifted
        torch.testing.assert_close(t, grid[999 - int(k)].float(), rtol=1e-6, atol=1e-3)


def test_input_errors_name_the_problem(wan, pairs, tmp_path):
    with pytest.raises(ConfigError, match="lora.rank"):
        tiny_config(wan, pairs, tmp_path / "x", **{"generator.lora.rank": 0})
    with pytest.raises(ConfigError, match="nothing to train"):
        tiny_config(wan, pairs, tmp_path / "x", **{"loss.use_video_dpo": False, "loss.use_patch_dpo": False})
    with pytest.raises(ValueError, match="patch grid"):
        gran_dpo_data.read_pairs(pairs, (2, 2))
    with pytest.raises(FileNotFoundError, match="candidate latent files are missing"):
        gd.train(tiny_config(wan, pairs, tmp_path / "x", **{"data.latents_dir": str(tmp_path / "nowhere")}))
    latents, meta = load_candidate_latents(candidate_latent_path(pairs.parent / "latents", "p1", "c2"))
    assert latents.shape == LATENT and meta["prompt"] == PROMPTS["p1"] and meta["seed"] == "2"
    with pytest.raises(ValueError, match="cannot name a latent file"):
        candidate_latent_path(tmp_path, "../p0", "c0")
