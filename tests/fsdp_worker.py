"""torchrun worker for tests/test_fsdp.py: one SGD step of a FSDP2-sharded tiny Wan DiT (per-block units).

It leaves with ``os._exit`` after the process group is destroyed: a CI run (session 14) saw rank 1 abort at exit
("terminate called without an active exception", SIGABRT) after its work was done, the gloo teardown race at
interpreter finalization described in pytorch/pytorch#179291.
"""

import gc
import os
import sys

import torch
from safetensors.torch import save_file

from vidreward.generators.config import GeneratorConfig
from vidreward.generators.registry import load_generator
from vidreward.train.distributed import cleanup_distributed, init_distributed, shard_fsdp2


def loss_of(gen, rank: int) -> torch.Tensor:
    """The flow-matching prediction error on rank-specific latents (same recipe as the test's reference)."""
    g = torch.Generator().manual_seed(100 + rank)
    clean = torch.randn(1, 16, 2, 4, 4, generator=g)
    noise = torch.randn(1, 16, 2, 4, 4, generator=g)
    embeds = gen.encode_prompts(["a red circle"])
    return gen.prediction_error(clean, noise, torch.tensor([500.0]), embeds).mean()


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    info = init_distributed("cpu")
    gen = load_generator(GeneratorConfig(path=model_dir, max_sequence_length=8))
    gen.transformer.requires_grad_(True)
    shard_fsdp2(gen.transformer, "blocks")
    opt = torch.optim.SGD(gen.transformer.parameters(), lr=0.1)
    loss_of(gen, info.rank).backward()  # FSDP2 reduce-scatters the mean gradient over ranks
    opt.step()
    full = {n: p.full_tensor().detach().clone() for n, p in gen.transformer.named_parameters()}
    if info.rank == 0:
        save_file(full, out)
    del opt, gen, full
    gc.collect()
    cleanup_distributed()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
