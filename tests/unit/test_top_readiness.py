"""`plait top`'s readiness column: a ready replica that reports a degraded condition shows it, with what to do; one
that is not ready shows why."""

from __future__ import annotations

from rich.console import Console

from plait.metrics.endpoint import serving_endpoint
from plait.metrics.health import Health
from plait.metrics.queues import QueueSnapshot
from plait_cli.top import TopView, read_endpoint, render

MISSING = "stream PLAIT_LIVE_OUTPUT is missing (no live view of attempts): run `plait streams ensure` as the operator"


def _shown(health: Health) -> str:
    with serving_endpoint(health, "127.0.0.1", 0) as url:
        endpoint = read_endpoint(url)
    console = Console(width=400, record=True, color_system=None)
    console.print(render(TopView(QueueSnapshot(), [], [endpoint], running=0)))
    return console.export_text()


def test_a_degraded_replica_is_shown_ready_with_its_condition() -> None:
    health = Health()
    health.serving()
    health.set_degraded("live_output", MISSING)
    assert f"yes, degraded: live_output: {MISSING}" in _shown(health)
    health.set_degraded("live_output", None)
    assert "degraded" not in _shown(health)


def test_a_replica_that_is_not_ready_is_shown_with_why() -> None:
    health = Health()
    health.serving()
    health.set_problem("nats", "not connected to [NATS]")  # square brackets are text, not markup
    assert "no nats: not connected to [NATS]" in _shown(health)
