"""Prometheus metrics and health endpoints of plait's services (see docs/operations.md)."""
