"""Helpers shared by the simulator, the fault suite and the invariant tests."""
