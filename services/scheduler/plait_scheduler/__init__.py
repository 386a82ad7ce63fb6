"""The scheduler service: stateless replicas that turn commands into decisions on the event log."""

from plait_scheduler.service import SchedulerService

__all__ = ["SchedulerService"]
