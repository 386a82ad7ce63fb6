"""``plait streams ensure``: the operator makes the streams and buckets, or brings them to this release."""

from __future__ import annotations

from plait.adapters.connection import connect
from plait.adapters.nats_errors import as_plait_errors
from plait.adapters.partitions import set_partitions
from plait.adapters.streams import Ensured, ensure_streams
from plait.errors import InputError
from plait.protocol import subjects
from plait.protocol.partitions import MAX_PARTITIONS
from plait.settings import Settings
from plait_cli.catalog_session import console, print_json
from plait_cli.stack import nats_for_command

ALLOWED_REPLICAS = (1, 3, 5)


async def ensure_streams_command(
    settings: Settings, replicas: int | None, as_json: bool, partitions: int | None = None
) -> int:
    if replicas is not None and replicas not in ALLOWED_REPLICAS:
        raise InputError(f"--replicas {replicas}: a stream has 1, 3 or 5 replicas")
    if partitions is not None and not 1 <= partitions <= MAX_PARTITIONS:
        raise InputError(f"--partitions {partitions}: from 1 to {MAX_PARTITIONS}")
    async with nats_for_command(settings, services=()) as nats_url:
        nc = await connect(nats_url, "plait-streams")
        try:
            with as_plait_errors("ensuring the streams"):  # a credential that may not: StreamsRefused says so
                done = await ensure_streams(nc.jetstream(), replicas)
                if partitions is not None and await set_partitions(nc.jetstream(), partitions):
                    done.append(Ensured(subjects.COMMANDS_STREAM, f"split in {partitions} partitions"))
        finally:
            await nc.close()
    if as_json:
        print_json({"streams": [{"name": one.name, "action": one.action} for one in done]})
        return 0
    out = console()
    for one in done:
        out.print(f"{one.name}: {one.action}")
    changed = sum(one.action != "unchanged" for one in done)
    out.print(f"{len(done)} streams and buckets, {changed} created or updated")
    return 0
