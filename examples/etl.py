"""An ETL pipeline: extract sales per region (fan-out), clean and aggregate each, join into one report.

plait run examples/etl.py:etl --days 14 --min-amount 5
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec

from plait import LaunchPlan, task, workflow

REGIONS = ["emea", "north-america", "latam", "apac", "oceania"]


class Sale(msgspec.Struct, frozen=True):
    region: str
    day: int
    product: str
    amount: float


@dataclass
class RegionSummary:
    region: str
    sales: int
    revenue: float
    best_product: str


class Report(msgspec.Struct, frozen=True):
    regions: int
    sales: int
    revenue: float
    top_region: str
    by_region: dict[str, float]


@task(retries=2)
def extract(region: str, days: int) -> list[Sale]:
    """Stands in for reading a region's sales export (deterministic, seeded by region)."""
    rng = random.Random(region)
    products = ["widget", "gadget", "gizmo", "doohickey"]
    return [
        Sale(region=region, day=day, product=rng.choice(products), amount=round(rng.uniform(-5, 120), 2))
        for day in range(days)
        for _ in range(rng.randint(3, 8))
    ]


@task
def clean(sales: list[Sale], min_amount: float) -> list[Sale]:
    """Drop refunds and amounts under the threshold."""
    return [sale for sale in sales if sale.amount >= max(min_amount, 0.0)]


@task
def summarize(sales: list[Sale], region: str) -> RegionSummary:
    revenue_by_product: dict[str, float] = {}
    for sale in sales:
        revenue_by_product[sale.product] = revenue_by_product.get(sale.product, 0.0) + sale.amount
    best = max(revenue_by_product, key=revenue_by_product.__getitem__) if revenue_by_product else ""
    return RegionSummary(region, len(sales), round(sum(s.amount for s in sales), 2), best)


@task
def report(summaries: list[RegionSummary]) -> Report:
    by_region = {s.region: s.revenue for s in summaries}
    return Report(
        regions=len(summaries),
        sales=sum(s.sales for s in summaries),
        revenue=round(sum(by_region.values()), 2),
        top_region=max(by_region, key=by_region.__getitem__),
        by_region=by_region,
    )


@workflow
def etl(days: int = 7, min_amount: float = 1.0) -> Report:
    summaries = [
        summarize(sales=clean(sales=extract(region=region, days=days), min_amount=min_amount), region=region)
        for region in REGIONS
    ]
    return report(summaries=summaries)


daily = LaunchPlan(etl, "etl-daily", default_inputs={"min_amount": 5.0}, fixed_inputs={"days": 1})
"""The same pipeline over one day only: `plait run examples/etl.py:daily`."""
