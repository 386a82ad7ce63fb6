"""Replay one seed of the simulator: ``python -m tests.sim --seed 1234 --profile replicas [--trace]``."""

from __future__ import annotations

import argparse
import sys

from plait.replay import timeline
from tests.sim.world import PROFILES, SimulationFailed, World, simulate


def _print_trace(world: World) -> None:
    for subject, records in sorted(world.log.by_subject.items()):
        print(subject)
        for t in timeline(records):
            what = t.attempt_id or t.node or ""
            print(f"  {t.sequence:>4} {t.replica:<10} {t.event:<24} {what}  <- {', '.join(t.commands)}")
    for command_id, reason in world.dead_letters.items():
        print(f"dead letter {command_id}: {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="replicas")
    parser.add_argument("--trace", action="store_true", help="print every execution's history")
    args = parser.parse_args()
    try:
        world = simulate(args.seed, args.profile)
    except SimulationFailed as failed:
        if args.trace and failed.world is not None:
            _print_trace(failed.world)
        print(failed, file=sys.stderr)
        return 1
    if args.trace:
        _print_trace(world)
    print(f"seed {args.seed} ({args.profile}): {world.counts}, log {world.log_digest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
