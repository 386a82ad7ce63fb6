"""The catalog service: projects the event log into PostgreSQL and answers queries over NATS."""

from plait_catalog.service import CatalogService

__all__ = ["CatalogService"]
