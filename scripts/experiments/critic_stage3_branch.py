"""Run a stage (iii) variant of the world critic build from another build's end of stage 2.

The build keeps the checkpoints at the ends of its stages 1 and 2 in ``work_dir/stage_ends``; this script copies the
end of stage 2 (and the initial model) of ``--from-work`` into a fresh ``--work`` dir and runs the temporal recipe's
stage (iii) there with the given curriculum, so variants of stage (iii) are compared on the same tower and language
model start. Session 14's Colour experiments:

    .venv/bin/python scripts/experiments/critic_stage3_branch.py --from-work runs/world_critic_build \\
        --work runs/branch_colour --out runs/branch_colour_out --phases "Color Requirement" --check-share 1 \\
        --phase-max-steps 1500 --mixed-steps 1

Session 15's run C (one unit per phase, three quarters of the batch on the new unit; C also passed --rescale-tokens,
as its source build had used it):

    .venv/bin/python scripts/experiments/critic_stage3_branch.py --from-work runs/world_critic_build \\
        --work runs/branch_c --out runs/branch_c_out --check-share 1 --replay-share 0.25 --phase-max-steps 1200 \\
        --unit-max-steps "vq=600,phy=600" --phases "Color Requirement;Lighting;Environment;vq;phy;vanilla;\\
Object Location / Spatial Distribution;Objects' Motion;Object(s)"

Phases are separated by ";" and the units of a phase by "," (TA facet names, "vq", "phy", "vanilla").
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from vidreward.world.build_critic import run_build
from vidreward.world.critic_build_config import temporal_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-work", required=True, help="work dir of a build whose stage 2 has ended")
    parser.add_argument("--work", required=True, help="new work dir of the variant (must not exist)")
    parser.add_argument("--out", required=True, help="where the variant's best critic is exported")
    parser.add_argument("--phases", required=True, help='e.g. "Lighting;Environment;Color Requirement;vq;phy"')
    parser.add_argument("--check-share", type=float, default=0.0, help="CriticBuildConfig.aux_check_share")
    parser.add_argument("--replay-share", type=float, default=0.5, help="CriticBuildConfig.replay_share")
    parser.add_argument("--phase-max-steps", type=int, default=600, help="CriticBuildConfig.phase_max_steps")
    parser.add_argument("--unit-max-steps", default="", help='CriticBuildConfig.unit_max_steps, e.g. "vq=600,phy=600"')
    parser.add_argument("--mixed-steps", type=int, default=3000, help="CriticBuildConfig.mixed_steps")
    parser.add_argument("--rescale-tokens", action="store_true",
                        help="record align_rescale_tokens in the config (it acts in stage 1: set it when the source "
                             "build used it)")
    parser.add_argument("--minutes", type=float, default=88.0, help="deadline in build minutes, stages 1-2 included")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    source, work = Path(args.from_work), Path(args.work)
    ends = sorted((source / "stage_ends").glob("step-*"))
    if len(ends) < 2:
        raise SystemExit(f"{source / 'stage_ends'} holds no end of stage 2; run the build past stage 2 first")
    if work.exists():
        raise SystemExit(f"{work} exists; give a new --work dir")
    shutil.copytree(source / "init", work / "init")
    shutil.copytree(ends[1], work / "checkpoints" / ends[1].name)
    phases = tuple(tuple(u.strip() for u in p.split(",")) for p in args.phases.split(";"))
    unit_max = {k.strip(): int(v) for k, v in (kv.split("=") for kv in args.unit_max_steps.split(",") if kv)}
    cfg = temporal_recipe(threads=args.threads, work_dir=str(work), out_dir=args.out, phases=phases,
                          aux_check_share=args.check_share, replay_share=args.replay_share,
                          phase_max_steps=args.phase_max_steps, unit_max_steps=unit_max, mixed_steps=args.mixed_steps,
                          align_rescale_tokens=args.rescale_tokens, deadline_minutes=args.minutes)
    run_build(cfg)


if __name__ == "__main__":
    main()
