"""Vanilla-DRF (Diffusion-DRF Sec. 3.1): one Yes/No question, the reward is the answer's log-probability.

    R_vanilla(v, c) = log p(Yes | v, c)                                                   (Eq. 1)

and, as the logit-difference variant, ``log p(Yes | v, c) - log p(No | v, c)``. The loss of a batch of B videos
is ``-(1/B) sum_b R(v_b, c_b)``. The context holds the generated video and the question built by
:func:`vanilla_question`; the decision is read as the first token of the answer.
"""

from __future__ import annotations

from typing import Literal

import torch

from vidreward.critics.queries import VANILLA_QUESTION
from vidreward.critics.vlm import VLMCritic
from vidreward.rewards.base import QueryTerm, RewardSample


def vanilla_question(caption: str, instruction: str = "Answer Yes or No.") -> str:
    """The Eq. 1 query: the prompt, then "Does this video match the prompt?" and the answer format (``instruction``;
    the world critic's build also asks it with another one, :func:`vidreward.world.critic_aux.vanilla_check_example`)."""
    return f'The prompt is: "{caption}"\n{VANILLA_QUESTION} {instruction}'


class VanillaDRFReward:
    """Eq. 1 as a loss: ``-log p(Yes)`` (``variant="logprob"``) or ``-(log p(Yes) - log p(No))``."""

    def __init__(self, critic: VLMCritic, variant: Literal["logprob", "logit_diff"] = "logprob") -> None:
        if variant not in ("logprob", "logit_diff"):
            raise ValueError(f"variant must be 'logprob' or 'logit_diff', got {variant!r}")
        self.critic = critic
        self.variant = variant

    def reward(self, frames: torch.Tensor, caption: str) -> torch.Tensor:
        """R(v, c) for one video's frames ``[N_f, 3, H, W]`` in [0, 1] (differentiable w.r.t. the frames)."""
        decision = self.critic.decision_logprobs(frames, vanilla_question(caption))
        return decision.logp_yes if self.variant == "logprob" else decision.logit_diff

    def terms(self, samples: list[RewardSample]) -> list[QueryTerm]:
        """One term per video: ``-R(v_b, c_b) / B``."""
        batch = len(samples)

        def term(b: int, caption: str):
            return lambda frames: -self.reward(frames[b], caption) / batch

        return [QueryTerm("vanilla", term(b, s.caption)) for b, s in enumerate(samples)]
