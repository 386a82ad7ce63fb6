"""Running services in the foreground: ``plait scheduler|executor|catalog|dev``, stopped by SIGTERM or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc
import structlog
from rich.console import Console

from plait.metrics.health import Health
from plait.settings import Settings
from plait_cli.heap import settle_heap
from plait_cli.home import advertise
from plait_cli.secure_dev import secure_dev_usage
from plait_cli.stack import PARENT_PID, READY_FD, embedded_stack, print_steps

log = structlog.get_logger()

Endpoint = contextlib.AbstractAsyncContextManager[object]


async def until_signalled(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("stopping", signal=signal.Signals(signum).name)
            scope.cancel()
            return


async def until_orphaned(parent: int, scope: anyio.CancelScope) -> None:
    """Stop when the process that started this one is gone (it was killed without stopping us)."""
    while True:
        await anyio.sleep(1.0)
        if os.getppid() != parent:
            break
    log.warning("stopping", reason=f"parent process {parent} is gone")
    scope.cancel()


def tell_ready() -> None:
    """Say "serving" to the embedded stack that started this service, if it did (``plait_cli.stack``)."""
    fd = os.environ.pop(READY_FD, "")
    if fd.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
        with contextlib.suppress(OSError):
            os.close(int(fd))


async def serve(
    run: Callable[..., Coroutine[Any, Any, None]],
    endpoint: Endpoint | None = None,
) -> None:
    """Run one service until SIGTERM/SIGINT; the service finishes or hands back its in-flight work. With
    ``endpoint``, its metrics and health endpoint serves meanwhile."""
    async with contextlib.AsyncExitStack() as stack:
        if endpoint is not None:
            await stack.enter_async_context(endpoint)
        async with anyio.create_task_group() as tg:
            tg.start_soon(until_signalled, tg.cancel_scope)
            if (parent := os.environ.pop(PARENT_PID, "")).isdigit():
                tg.start_soon(until_orphaned, int(parent), tg.cancel_scope)
            await tg.start(run)
            tell_ready()
            settle_heap()


async def serve_scheduler(settings: Settings) -> None:
    from plait_scheduler import SchedulerService

    service = SchedulerService.from_settings(settings)
    await serve(service.run, endpoint(settings, "scheduler", service.health))


async def serve_executor(settings: Settings) -> None:
    from plait_executor import ExecutorService

    service = ExecutorService.from_settings(settings)
    await serve(service.run, endpoint(settings, "executor", service.health))


async def serve_catalog(settings: Settings) -> None:
    from plait_catalog import CatalogService

    service = CatalogService.from_settings(settings)
    await serve(service.run, endpoint(settings, "catalog", service.health))


async def serve_dev(settings: Settings, secure: bool = False) -> None:
    """Everything on the embedded default, advertised in PLAIT_HOME/dev.json for other commands; with ``secure``,
    nats-server authenticates its users and confines them (docs/security.md)."""
    console = Console(stderr=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(until_signalled, tg.cancel_scope)
        async with embedded_stack(settings, log_format="console", report=print_steps(console), secure=secure) as info:
            path = advertise(settings, info)
            console.print(f"plait dev is running\n  NATS:       {info.nats_url}\n  PostgreSQL: {info.database_url}")
            console.print(f"  (advertised in {path}; `plait run` uses it)\nCtrl-C stops it.")
            if secure:
                console.print(secure_dev_usage(settings.home_path))
            try:
                await anyio.sleep_forever()
            finally:
                path.unlink(missing_ok=True)


def endpoint(settings: Settings, service: str, health: Health) -> Endpoint | None:
    """The service's metrics and health endpoint, when PLAIT_METRICS_PORT names a port."""
    from plait.metrics.endpoint import observed

    if not settings.metrics_port:
        return None
    return observed(health, service, settings.replica_name, settings.metrics_address, settings.metrics_port)
