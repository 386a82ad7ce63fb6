"""A map task and a cached task: list many images once (cached: an expensive listing is reused by later
runs with the same inputs), then "render" a thumbnail for each, at most 20 at a time, and summarize them.

    plait run examples/thumbnails.py:thumbnails --count 200
    plait run examples/thumbnails.py:thumbnails --count 200    # the listing now comes from the cache
"""

from __future__ import annotations

import hashlib
import time

import msgspec

from plait import map_task, task, workflow


class Thumbnail(msgspec.Struct, frozen=True):
    image: str
    digest: str
    size: int


@task(cache=True, cache_version="1")
def list_images(count: int) -> list[str]:
    time.sleep(0.5)  # stands for a slow listing of a bucket
    return [f"image-{i:05d}.png" for i in range(count)]


@task(retries=1)
def render(image: str, width: int) -> Thumbnail:
    digest = hashlib.sha256(f"{image}@{width}".encode()).hexdigest()[:16]
    return Thumbnail(image=image, digest=digest, size=width * width // 4)


@task
def summarize(thumbnails: list[Thumbnail]) -> dict[str, int]:
    return {"thumbnails": len(thumbnails), "bytes": sum(t.size for t in thumbnails)}


@workflow
def thumbnails(count: int = 50, width: int = 64) -> dict[str, int]:
    images = list_images(count=count)
    return summarize(thumbnails=map_task(render, concurrency=20)(image=images, width=width))
