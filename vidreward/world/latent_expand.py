"""Function-preserving growth of a trained ``AutoencoderKLWan``'s latent channels (``z_dim`` -> ``z_new``).

The encoder's last convolution (``encoder.conv_out``) emits ``[mu (z), logvar (z)]``; ``quant_conv`` (1x1x1) maps
that ``2z`` vector to the posterior's ``[mu, logvar]``; ``post_quant_conv`` (1x1x1) and the decoder's ``conv_in``
read the ``z`` latent channels. Growing ``z`` to ``z_new`` with ``n = z_new - z`` new channels:

- ``encoder.conv_out`` rows become ``[mu_old, mu_new, logvar_old, logvar_new]``: the old rows unchanged, the new
  means small random rows (``init_std``; bias 0), the new log-variances zero rows (bias 0);
- ``quant_conv``: the old ``2z x 2z`` block is placed on the old rows and columns, the new channels pass through
  (identity), and nothing mixes old and new;
- ``post_quant_conv``: the old ``z x z`` block, identity on the new channels;
- ``decoder.conv_in``: the new channels' input columns are zero.

So the old channels of every posterior mean are exactly what they were, and the decoded video is exactly the old
one, while the gradient of the loss with respect to ``conv_in``'s new columns is not zero (the new channels carry
random features of the encoder's last activations): joint training then starts from the trained VAE and can put
what the old latent lacks into the new channels.
"""

from __future__ import annotations

import torch


def expand_latents(vae, z_new: int, init_std: float = 0.02, generator: torch.Generator | None = None):
    """A new ``AutoencoderKLWan`` with ``z_new >= z_dim`` latent channels that computes what ``vae`` computes (module
    doc); ``vae`` itself is returned when ``z_new == z_dim``. Latent statistics become 0 / 1 (re-measured later)."""
    from diffusers import AutoencoderKLWan

    z_old = vae.config.z_dim
    if z_new < z_old:
        raise ValueError(f"expand_latents: z_new={z_new} < z_dim={z_old}; channels can only be added")
    if z_new == z_old:
        return vae
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    config.update(z_dim=z_new, latents_mean=[0.0] * z_new, latents_std=[1.0] * z_new)
    grown_vae = AutoencoderKLWan(**config)
    old_state = vae.state_dict()
    rows = torch.tensor([*range(z_old), *range(z_new, z_new + z_old)])  # where the old [mu, logvar] rows go
    new_rows = torch.arange(z_old, z_new)
    state: dict[str, torch.Tensor] = {}
    for key, target in grown_vae.state_dict().items():
        source = old_state[key]
        if source.shape == target.shape:
            state[key] = source.clone()
            continue
        grown = torch.zeros_like(target)
        weight = key.endswith("weight")
        if key.startswith("encoder.conv_out."):
            grown[rows] = source
            if weight:
                noise = torch.randn(grown[new_rows].shape, generator=generator, dtype=grown.dtype)
                grown[new_rows] = noise * init_std
        elif key.startswith("quant_conv."):
            if weight:
                grown[rows[:, None], rows[None, :]] = source
                grown[new_rows, new_rows] = 1.0
            else:
                grown[rows] = source
        elif key.startswith("post_quant_conv."):
            if weight:
                grown[:z_old, :z_old] = source
                grown[new_rows, new_rows] = 1.0
            else:
                grown[:z_old] = source
        elif key.startswith("decoder.conv_in.") and weight:
            grown[:, :z_old] = source
        else:
            raise ValueError(f"expand_latents: no rule for {key} {tuple(source.shape)} -> {tuple(target.shape)}")
        state[key] = grown
    grown_vae.load_state_dict(state)
    return grown_vae
