"""Net2WiderNet widening of a Wan VAE decoder: exact copies, chunk layouts, the attention scale, noise."""

from __future__ import annotations

import math

import pytest
import torch

from vidreward.world.build_vae import VaeStageConfig, make_vae
from vidreward.world.widen import widen_decoder, widen_decoder_state


def test_linear_rows_and_columns_by_hand():
    # conv_in: out widened (rows repeat), conv_out: in widened (columns repeat / 2)
    narrow = {"decoder.conv_in.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
              "decoder.conv_out.weight": torch.tensor([[5.0, 6.0]])}
    wide = widen_decoder_state(narrow, {"decoder.conv_in.weight": (4, 2), "decoder.conv_out.weight": (1, 4)})
    assert wide["decoder.conv_in.weight"].tolist() == [[1, 2], [1, 2], [3, 4], [3, 4]]
    assert wide["decoder.conv_out.weight"].tolist() == [[2.5, 2.5, 3.0, 3.0]]
    # h = W_in x, y = W_out h  ==  y' = W_out' (W_in' x)
    x = torch.tensor([0.5, -1.0])
    y = narrow["decoder.conv_out.weight"] @ (narrow["decoder.conv_in.weight"] @ x)
    y2 = wide["decoder.conv_out.weight"] @ (wide["decoder.conv_in.weight"] @ x)
    assert torch.allclose(y, y2)


def test_chunked_outputs_widen_chunk_by_chunk_and_q_is_rescaled():
    # to_qkv of width 1: rows q, k, v; widened x2 -> q, q, k, k, v, v with q / sqrt(2)
    narrow = {"mid.attentions.0.to_qkv.bias": torch.tensor([1.0, 2.0, 3.0]),
              "up.upsamplers.0.time_conv.bias": torch.tensor([7.0, 8.0])}
    wide = widen_decoder_state(narrow, {"mid.attentions.0.to_qkv.bias": (6,), "up.upsamplers.0.time_conv.bias": (4,)})
    r = 1 / math.sqrt(2)
    assert torch.allclose(wide["mid.attentions.0.to_qkv.bias"], torch.tensor([r, r, 2, 2, 3, 3]))
    assert wide["up.upsamplers.0.time_conv.bias"].tolist() == [7, 7, 8, 8]


def test_non_multiple_width_is_an_error():
    with pytest.raises(ValueError, match="whole multiple"):
        widen_decoder_state({"decoder.conv_in.bias": torch.zeros(16)}, {"decoder.conv_in.bias": (24,)})


@pytest.mark.parametrize("factor", [2, 3])
def test_widened_wan_decoder_decodes_the_same_video(factor):
    torch.manual_seed(0)
    narrow = make_vae(VaeStageConfig(base_dim=8, z_dim=4))
    config = {k: v for k, v in narrow.config.items() if not k.startswith("_")}
    wide = type(narrow).from_config({**config, "decoder_base_dim": 8 * factor})
    widen_decoder(narrow, wide)
    z = torch.randn(1, 4, 3, 4, 4)
    with torch.no_grad():
        a, b = narrow.decode(z).sample, wide.decode(z).sample
    assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())
    noisy = type(narrow).from_config({**config, "decoder_base_dim": 8 * factor})
    widen_decoder(narrow, noisy, noise=0.01, seed=1)
    with torch.no_grad():
        c = noisy.decode(z).sample
    assert 0 < float((c - a).abs().max()) < 0.2


def test_random_split_keeps_each_column_sum_and_the_product():
    narrow = {"decoder.conv_in.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
              "decoder.conv_out.weight": torch.tensor([[5.0, 6.0]])}
    shapes = {"decoder.conv_in.weight": (4, 2), "decoder.conv_out.weight": (1, 4)}
    wide = widen_decoder_state(narrow, shapes, generator=torch.Generator().manual_seed(0), random_split=True)
    out = wide["decoder.conv_out.weight"]
    assert torch.allclose(out[0, :2].sum(), torch.tensor(5.0)) and torch.allclose(out[0, 2:].sum(), torch.tensor(6.0))
    assert not torch.equal(out, torch.tensor([[2.5, 2.5, 3.0, 3.0]]))  # the copies are read with different weights
    assert bool((out > 0).all())  # positive shares, each at least 1/3 of the column here (u in [0.5, 1.5))
    x = torch.tensor([0.5, -1.0])
    y = narrow["decoder.conv_out.weight"] @ (narrow["decoder.conv_in.weight"] @ x)
    assert torch.allclose(y, out @ (wide["decoder.conv_in.weight"] @ x))


def _copy_grad_gap(wide) -> float:
    """Largest difference between the gradients of the two copies of a widened conv_in output channel."""
    grad = wide.decoder.conv_in.weight.grad  # [2C, z, 3, 3, 3], copies adjacent
    return float((grad[0::2] - grad[1::2]).abs().max())


def test_random_split_decodes_the_same_video_and_breaks_the_copies_symmetry():
    torch.manual_seed(0)
    narrow = make_vae(VaeStageConfig(base_dim=8, z_dim=4))
    config = {k: v for k, v in narrow.config.items() if not k.startswith("_")}
    z = torch.randn(1, 4, 3, 4, 4)
    with torch.no_grad():
        a = narrow.decode(z).sample
    gaps = {}
    for split in (False, True):
        wide = type(narrow).from_config({**config, "decoder_base_dim": 16})
        widen_decoder(narrow, wide, seed=3, random_split=split)
        b = wide.decode(z).sample
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())
        b.square().mean().backward()
        gaps[split] = _copy_grad_gap(wide)
    assert gaps[False] < 1e-7 < 1e-4 < gaps[True]  # plain copies get equal gradients; split copies do not
