"""Pair building by median margins (HALO Sec. 3.3) on a hand-made reward table (1x2 patch grid), both m_P rules."""

import math
import random

import pytest
import torch

from vidreward.halo.pairs import CandidateScores, PreferencePair, build_pairs, collate_pair_targets

# prompt A                      prompt B                      prompt C                     prompt D
# a1 v=3.0  p=[2.25, 2.5 ]      b1 v=1.0  p=[1.0, 1.0 ]       c1 v=2.0 (alone: no pair)    d1 v=1.0   p=[1.0, 1.5]
# a2 v=2.0  p=[2.25, 3.5 ]      b2 v=1.25 p=[1.25, 1.0]                                    d2 v=1.375 p=[1.0, 1.0]
# a3 v=2.5  p=[2.125, 2.75]     b3 v=1.0  p=[3.0, 0.75]
#
# pair    |dv|   |dp|           max|dp|  video (> m_V)  patch, all_patches (> .25)  patch, per_pair_max (> .75)
# a1,a2   1.0    [0,     1.0 ]  1.0      yes            yes                          yes
# a1,a3   0.5    [0.125, 0.25]  0.25     yes            no (0.25 is not > 0.25)      no
# a2,a3   0.5    [0.125, 0.75]  0.75     yes            yes                          no (0.75 is not > 0.75)
# b1,b2   0.25   [0.25,  0   ]  0.25     no             no   -> dropped               no  -> dropped
# b1,b3   0      [2.0,   0.25]  2.0      no             yes                          yes (video tie: b1 listed first wins, sign 0)
# b2,b3   0.25   [1.75,  0.25]  1.75     no             yes                          yes
# d1,d2   0.375  [0,     0.5 ]  0.5      no (not > .375) yes                         no  -> dropped
# m_V = median(0, .25, .25, .375, .5, .5, 1) = .375
# all_patches:  m_P = median(0, 0, 0, .125, .125, .25, .25, .25, .25, .5, .75, 1, 1.75, 2) = (.25 + .25) / 2 = .25
# per_pair_max: m_P = median(.25, .25, .5, .75, 1, 1.75, 2) = .75
TABLE = [
    ("A", "a1", 3.0, [[2.25, 2.5]]),
    ("A", "a2", 2.0, [[2.25, 3.5]]),
    ("A", "a3", 2.5, [[2.125, 2.75]]),
    ("B", "b1", 1.0, [[1.0, 1.0]]),
    ("B", "b2", 1.25, [[1.25, 1.0]]),
    ("B", "b3", 1.0, [[3.0, 0.75]]),
    ("C", "c1", 2.0, [[2.0, 2.0]]),
    ("D", "d1", 1.0, [[1.0, 1.5]]),
    ("D", "d2", 1.375, [[1.0, 1.0]]),
]
# (winner, loser) -> kept_by, per rule; every other candidate pair must be dropped
KEPT = {
    "per_pair_max": {("a1", "a2"): ["video", "patch"], ("a1", "a3"): ["video"], ("a3", "a2"): ["video"],
                     ("b1", "b3"): ["patch"], ("b2", "b3"): ["patch"]},
    "all_patches": {("a1", "a2"): ["video", "patch"], ("a1", "a3"): ["video"], ("a3", "a2"): ["video", "patch"],
                    ("b1", "b3"): ["patch"], ("b2", "b3"): ["patch"], ("d2", "d1"): ["patch"]},
}


def candidates():
    return [CandidateScores(*row) for row in TABLE]


def by_ids(pairs):
    return {(p.winner_id, p.loser_id): p for p in pairs}


@pytest.mark.parametrize(("rule", "m_patch", "kept", "patch_only"),
                         [("per_pair_max", 0.75, 5, 2), ("all_patches", 0.25, 6, 3)])
def test_medians_and_counts(rule, m_patch, kept, patch_only):
    result = build_pairs(candidates(), patch_median=rule)
    assert result.patch_median == rule
    assert result.median_video_margin == 0.375
    assert result.median_patch_margin == m_patch
    assert result.num_candidate_pairs == 7
    assert len(result.pairs) == kept and result.num_dropped == 7 - kept
    assert result.num_kept_by_video == 3
    assert result.num_kept_by_patch_only == patch_only
    assert result.num_prompts_without_pairs == 1


def test_default_rule_is_per_pair_max():
    assert build_pairs(candidates()).patch_median == "per_pair_max"
    with pytest.raises(ValueError, match="patch_median must be one of"):
        build_pairs(candidates(), patch_median="median")


@pytest.mark.parametrize("rule", sorted(KEPT))
def test_keeps_and_drops_exactly_the_median_rule_pairs(rule):
    pairs = by_ids(build_pairs(candidates(), patch_median=rule).pairs)
    assert {ids: p.kept_by for ids, p in pairs.items()} == KEPT[rule]


def test_stored_margins_signs_and_weights():
    per_max = by_ids(build_pairs(candidates(), patch_median="per_pair_max").pairs)  # m_V = .375, m_P = .75
    every = by_ids(build_pairs(candidates(), patch_median="all_patches").pairs)  # m_V = .375, m_P = .25
    a1a2 = per_max[("a1", "a2")]
    assert (a1a2.video_margin, a1a2.video_sign, a1a2.video_weight) == (1.0, 1, 1.0)
    assert a1a2.patch_margins == [[0.0, -1.0]]
    assert a1a2.patch_signs == [[0, -1]]
    assert a1a2.patch_weights == [[0.0, 1.0]]

    a1a3 = per_max[("a1", "a3")]
    assert a1a3.patch_margins == [[0.125, -0.25]]
    assert a1a3.patch_signs == [[1, -1]]
    assert a1a3.patch_weights[0] == pytest.approx([0.125 / 0.75, 0.25 / 0.75])
    assert every[("a1", "a3")].patch_weights == [[0.5, 1.0]]  # 0.125 / 0.25, and 0.25 / 0.25

    a3a2 = per_max[("a3", "a2")]  # a3 wins on video reward (2.5 > 2.0)
    assert (a3a2.video_reward_winner, a3a2.video_reward_loser) == (2.5, 2.0)
    assert a3a2.patch_margins == [[-0.125, -0.75]]
    assert a3a2.patch_weights[0] == pytest.approx([0.125 / 0.75, 1.0])
    assert every[("a3", "a2")].patch_weights == [[0.5, 1.0]]

    b2b3 = per_max[("b2", "b3")]
    assert b2b3.video_margin == 0.25
    assert b2b3.video_weight == pytest.approx(0.25 / 0.375)
    assert b2b3.patch_signs == [[-1, 1]]
    assert b2b3.patch_weights[0] == pytest.approx([1.0, 0.25 / 0.75])  # 1.75 / .75 clips at 1

    tie = per_max[("b1", "b3")]
    assert (tie.video_margin, tie.video_sign, tie.video_weight) == (0.0, 0, 0.0)
    assert tie.patch_margins == [[-2.0, 0.25]]

    d2d1 = every[("d2", "d1")]  # kept by its patch alone under all_patches; d2 wins on video (1.375 > 1.0)
    assert (d2d1.video_margin, d2d1.video_sign, d2d1.video_weight) == (0.375, 1, 1.0)
    assert (d2d1.patch_margins, d2d1.patch_signs, d2d1.patch_weights) == ([[0.0, -0.5]], [[0, -1]], [[0.0, 1.0]])


def test_per_pair_max_filters_and_all_patches_keeps_nearly_everything():
    # 200 prompts x 5 candidates of i.i.d. rewards on a 3x3 grid. A strict '>' of a median keeps at most half of
    # the values, so under per_pair_max each rule keeps <= 1000 of the 2000 pairs; under all_patches the max of 9
    # margins beats the median of single margins for all but ~0.5^9 of pairs (the literal reading filters nothing).
    # Measured with this seed: per_pair_max keeps 1494 (74.7%), all_patches 1997 (99.9%).
    rng = random.Random(0)
    table = [CandidateScores(f"p{i}", f"c{j}", rng.uniform(1, 4), [[rng.uniform(1, 4) for _ in range(3)]
                                                                      for _ in range(3)])
             for i in range(200) for j in range(5)]
    per_max = build_pairs(table, patch_median="per_pair_max")
    every = build_pairs(table, patch_median="all_patches")
    assert per_max.num_candidate_pairs == every.num_candidate_pairs == 2000
    for result in (per_max, every):
        assert result.num_kept_by_video <= 1000
    assert sum("patch" in p.kept_by for p in per_max.pairs) <= 1000
    assert len(per_max.pairs) <= 0.8 * 2000  # the rules are independent here: ~1 - 1/4 of the pairs
    assert len(every.pairs) >= 0.99 * 2000


def test_medians_are_global_not_per_prompt():
    # X has large margins (2, 4, 2), Y small ones (0.25, 0.5, 0.25); 1x1 grid with p = v.
    # Global m_V = m_P = median(.25, .25, .5, 2, 2, 4) = 1.25 -> every X pair kept, every Y pair dropped.
    # (Per-prompt medians would have kept Y's pair y1,y3: 0.5 > 0.25.)
    table = [
        ("X", "x1", 4.0),
        ("X", "x2", 2.0),
        ("X", "x3", 0.0),
        ("Y", "y1", 1.0),
        ("Y", "y2", 1.25),
        ("Y", "y3", 1.5),
    ]
    result = build_pairs([CandidateScores(prompt, cid, v, [[v]]) for prompt, cid, v in table])
    assert result.median_video_margin == result.median_patch_margin == 1.25
    assert set(by_ids(result.pairs)) == {("x1", "x2"), ("x1", "x3"), ("x2", "x3")}


def test_collate_and_round_trip():
    pairs = build_pairs(candidates()).pairs
    targets = collate_pair_targets(pairs)
    assert targets.patch_signs.shape == (len(pairs), 1, 2) == (5, 1, 2)
    assert targets.video_weights.tolist() == pytest.approx([p.video_weight for p in pairs])
    assert targets.video_signs.tolist() == [float(p.video_sign) for p in pairs]
    assert targets.patch_signs.dtype == torch.float32
    assert PreferencePair.from_dict(pairs[0].to_dict()) == pairs[0]
    assert CandidateScores.from_dict(
        {"prompt_id": "A", "candidate_id": 3, "video_reward": "2.5", "patch_rewards": [[1, 2]]}
    ) == CandidateScores("A", "3", 2.5, [[1.0, 2.0]])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="duplicate candidate 'a1'"):
        build_pairs(candidates() + [CandidateScores("A", "a1", 1.0, [[1.0, 1.0]])])
    with pytest.raises(ValueError, match="differs"):
        build_pairs(candidates() + [CandidateScores("A", "a4", 1.0, [[1.0, 1.0, 1.0]])])
    with pytest.raises(ValueError, match="finite"):
        build_pairs(candidates() + [CandidateScores("A", "a4", math.nan, [[1.0, 1.0]])])
    with pytest.raises(ValueError, match="N >= 2"):
        build_pairs([CandidateScores("C", "c1", 2.0, [[2.0, 2.0]])])
    with pytest.raises(ValueError, match="bad candidate score record"):
        CandidateScores.from_dict({"prompt_id": "A"})
