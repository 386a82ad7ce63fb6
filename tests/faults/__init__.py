"""The fault suite: real service processes, broken on purpose, and the invariant checker over the whole log."""
