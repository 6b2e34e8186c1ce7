"""Issue 6's gate measurement for any critic directory: the test batch of ``tests/test_world_critic.py`` (or a larger
batch of other held-out seeds), frames in order and shuffled, per dimension.

It runs the test module's own ``_accuracy`` (the real call path: ``answer_logprobs`` at the decision token for TA /
Phy / VQ, ``decision_logprobs`` for Vanilla), so a critic that scores here passes or fails the gate test the same way
once shipped. ``--seed0 80000000 --per-dimension 64`` draws fresh held-out scenes (the build never trains on seeds
>= 40M and evaluates on 50M...; the test batch is 70M...). Several critics are scored side by side.

``--margins`` also takes each example's margin m = log p(Yes) - log p(No) at its decision (the test module's
``_margin``; the gate answers Yes iff m > 0) and reports per dimension the rate of Yes answers and the ROC AUC of m
against the labels (the share of (Yes, No) example pairs whose margins are in the right order, ties 1/2): an AUC near
the accuracy means the critic does not separate the classes; an AUC well above it means a biased threshold. With two
or more critics it adds the ensemble row "mean margin": the critics' margins averaged per example, thresholded at 0.

    .venv/bin/python scripts/experiments/critic_test_batch.py [--critic DIR ...] [--per-dimension 12]
        [--seed0 70000000] [--margins] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from vidreward.critics.vlm import VLMCritic
from vidreward.world import critic_data as cd
from vidreward.world.critic_build_config import ASSET_DIR

TEST_MODULE = Path(__file__).resolve().parents[2] / "tests" / "test_world_critic.py"


def gate_module():
    """``tests/test_world_critic.py`` as a module (its ``_accuracy``, batch size and seeds)."""
    spec = importlib.util.spec_from_file_location("test_world_critic", TEST_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gate_scores(gate, critic: VLMCritic, examples: list[cd.CriticExample]) -> dict:
    """The gate test's accuracies of ``critic`` on ``examples``: overall and per dimension, frames in order and
    shuffled."""
    overall, dims = gate._accuracy(critic, examples, shuffle=False)
    shuffled, shuffled_dims = gate._accuracy(critic, examples, shuffle=True)
    return {"overall": overall, "per_dimension": dims, "shuffled": shuffled, "shuffled_per_dimension": shuffled_dims}


def example_margins(gate, critic: VLMCritic, examples: list[cd.CriticExample]) -> list[float]:
    """The gate test's margin log p(Yes) - log p(No) of each example, frames in order."""
    return [gate._margin(critic, ex, ex.video) for ex in examples]


def roc_auc(margins: list[float], labels: list[str]) -> float:
    """P(m_yes > m_no) over (Yes, No) pairs, ties counted 1/2."""
    yes = [m for m, y in zip(margins, labels) if y == "Yes"]
    no = [m for m, y in zip(margins, labels) if y == "No"]
    wins = sum((a > b) + 0.5 * (a == b) for a in yes for b in no)
    return wins / (len(yes) * len(no))


def margin_stats(margins: list[float], examples: list[cd.CriticExample]) -> dict:
    """Per dimension: accuracy of m > 0, rate of Yes answers and ROC AUC."""
    out = {}
    for dim in cd.DIMENSIONS:
        idx = [i for i, ex in enumerate(examples) if ex.dimension == dim]
        m, labels = [margins[i] for i in idx], [examples[i].label for i in idx]
        out[dim] = {"accuracy": sum((x > 0) == (y == "Yes") for x, y in zip(m, labels)) / len(idx),
                    "yes_rate": sum(x > 0 for x in m) / len(idx), "auc": roc_auc(m, labels)}
    return out


def print_margin_table(rows: dict[str, dict]) -> None:
    print(f"{'margins':<40} " + " ".join(f"{d + ' acc/yes/auc':>22}" for d in cd.DIMENSIONS))
    for name, stats in rows.items():
        print(f"{name[-40:]:<40} " + " ".join(
            f"{stats[d]['accuracy']:7.3f}{stats[d]['yes_rate']:7.2f}{stats[d]['auc']:8.3f}" for d in cd.DIMENSIONS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--critic", nargs="+", default=[str(ASSET_DIR)], help="critic save_pretrained dirs")
    parser.add_argument("--per-dimension", type=int, default=None, help="examples per dimension (default: the test's)")
    parser.add_argument("--seed0", type=int, default=None, help="first scene seed (default: the test batch's)")
    parser.add_argument("--margins", action="store_true", help="also Yes rate, ROC AUC and the mean-margin ensemble")
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()
    gate = gate_module()
    per_dim = args.per_dimension or gate.PER_DIMENSION
    seed0 = gate.TEST_SEED0 if args.seed0 is None else args.seed0
    examples = cd.held_out_examples(per_dim, n_frames=gate.N_FRAMES, seed0=seed0)
    rows, margins = {}, {}
    header = f"{'critic':<40} {'overall':>7} " + " ".join(f"{d:>7}" for d in cd.DIMENSIONS) + f" {'shuffled':>8}"
    print(f"{per_dim} examples per dimension from seed {seed0}\n{header}")
    for path in args.critic:
        critic = VLMCritic.from_pretrained(path)
        row = rows[path] = gate_scores(gate, critic, examples)
        print(f"{path[-40:]:<40} {row['overall']:7.3f} "
              + " ".join(f"{row['per_dimension'][d]:7.3f}" for d in cd.DIMENSIONS) + f" {row['shuffled']:8.3f}")
        if args.margins:
            margins[path] = example_margins(gate, critic, examples)
    stats = {path: margin_stats(m, examples) for path, m in margins.items()}
    if len(margins) > 1:
        mean = [sum(per_example) / len(margins) for per_example in zip(*margins.values())]
        stats["mean margin"] = margin_stats(mean, examples)
    if stats:
        print_margin_table(stats)
    if args.out:
        Path(args.out).write_text(json.dumps({"per_dimension": per_dim, "seed0": seed0, "critics": rows,
                                              "margins": stats}, indent=1))


if __name__ == "__main__":
    main()
