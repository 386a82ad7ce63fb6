"""The endpoint of a service process: /readyz names what fails, /livez answers while the loop beats, /metrics
exports the registry."""

from __future__ import annotations

from plait.metrics.endpoint import serving_endpoint
from plait.metrics.health import Health
from tests.helpers.metrics_scrape import get


def test_a_service_is_not_ready_before_it_serves() -> None:
    with serving_endpoint(Health(), "127.0.0.1", 0) as url:
        assert get(f"{url}/readyz") == (503, "service: starting\n")


def test_readiness_names_each_failing_check_and_passes_once_none_fails() -> None:
    health = Health()
    health.serving()
    connected = False
    health.add_check("nats", lambda: None if connected else "not connected to NATS")
    health.set_problem("postgresql", "unreachable (connection refused)")
    with serving_endpoint(health, "127.0.0.1", 0) as url:
        status, body = get(f"{url}/readyz")
        assert status == 503
        assert body.splitlines() == ["postgresql: unreachable (connection refused)", "nats: not connected to NATS"]
        connected = True
        health.set_problem("postgresql", None)
        assert get(f"{url}/readyz") == (200, "ok\n")
        assert "plait_ready 1.0" in get(f"{url}/metrics")[1]


def test_liveness_passes_while_the_loop_has_beaten_lately_and_unknown_paths_are_404() -> None:
    with serving_endpoint(Health(), "127.0.0.1", 0) as url:
        assert get(f"{url}/livez") == (200, "ok\n")
        assert get(f"{url}/nope")[0] == 404


def test_a_degraded_service_stays_ready_and_says_what_to_mend_until_it_is_mended() -> None:
    health = Health()
    health.serving()
    health.set_degraded("live_output", "stream PLAIT_LIVE_OUTPUT is missing: run `plait streams ensure`")
    with serving_endpoint(health, "127.0.0.1", 0) as url:
        assert get(f"{url}/readyz") == (
            200,
            "ok\ndegraded: live_output: stream PLAIT_LIVE_OUTPUT is missing: run `plait streams ensure`\n",
        )
        assert 'plait_degraded{condition="live_output"} 1.0' in get(f"{url}/metrics")[1]
        health.set_degraded("live_output", None)
        assert get(f"{url}/readyz") == (200, "ok\n")
        assert 'plait_degraded{condition="live_output"} 0.0' in get(f"{url}/metrics")[1]
