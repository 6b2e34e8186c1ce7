"""Test setup: no network, quiet progress bars, few threads (CI has 2 cores)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("VIDREWARD_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(2)

import pytest  # noqa: E402


class StageKilled(Exception):
    """What a build stage run raises when :func:`kill_train_stage_at` kills it."""


@pytest.fixture()
def kill_train_stage_at(monkeypatch):
    """``with kill_train_stage_at(n) as killed:`` every world build stage run inside dies (raises ``killed``) when it
    reaches step ``n``, after the checkpoints before it were written, as a killed process would."""
    import contextlib

    import vidreward.world.build_loop as loop

    real = loop.train_stage

    @contextlib.contextmanager
    def at(step: int):
        def killed_stage(name, stage_dir, model, loss_fn, budget, evaluate=None, **kwargs):
            def loss_or_die(s: int):
                if s >= step:
                    raise StageKilled(f"{name} killed at step {s}")
                return loss_fn(s)

            return real(name, stage_dir, model, loss_or_die, budget, evaluate, **kwargs)

        monkeypatch.setattr(loop, "train_stage", killed_stage)
        try:
            yield StageKilled
        finally:
            monkeypatch.setattr(loop, "train_stage", real)

    return at


@pytest.fixture()
def one_thread():
    """Tiny models run fastest on one thread when other jobs share the cores (``usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_world_critic(tmp_path_factory):
    """A freshly initialised, very small world critic (the shipped tokenizer, question-first processor), saved and
    reloaded through ``VLMCritic.from_pretrained``."""
    from transformers import AutoTokenizer

    from vidreward.critics.vlm import VLMCritic
    from vidreward.world.critic_build_config import ASSET_DIR
    from vidreward.world.critic_model import CriticArch, build_critic_model

    tokenizer = AutoTokenizer.from_pretrained(ASSET_DIR)
    arch = CriticArch(vision_depth=1, vision_hidden=32, vision_heads=2, text_layers=1, text_hidden=32, text_heads=2,
                      text_kv_heads=1)
    model, processor = build_critic_model(tokenizer, arch, seed=0)
    path = tmp_path_factory.mktemp("critic")
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return VLMCritic.from_pretrained(path)
