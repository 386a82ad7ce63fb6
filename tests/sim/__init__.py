"""The deterministic simulator: plait's decision logic under seeded faults (see ``tests.sim.world``).

Replay one seed: ``python -m tests.sim --seed 1234 --profile replicas --trace``.
"""
