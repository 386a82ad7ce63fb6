"""The plait exception hierarchy.

Errors from NATS and asyncpg are mapped to these at the adapter edge, so callers only ever
catch ``PlaitError`` and its subclasses.
"""


class PlaitError(Exception):
    """Root of every error plait raises on purpose."""


class DefinitionError(PlaitError):
    """A task or workflow definition is wrong: names the entity, node and parameter at fault."""


class InputError(PlaitError):
    """Launch inputs or a command's payload do not match the interface they are meant for."""


class RegistrationConflict(PlaitError):
    """A name and version is already registered with different content; versions are immutable."""


class ConflictError(PlaitError):
    """A decision was stale: another one was appended to the execution first (retried internally)."""


class NotFound(PlaitError):
    """The execution, workflow, task or version asked for does not exist."""


class TransportError(PlaitError):
    """Talking to a server (NATS or PostgreSQL) failed: it could not be reached, or stopped answering.

    ``execution_id`` names the execution a launch was for, when it failed this way: the launch may have been
    stored, so launching again with that id starts it at most once."""

    def __init__(self, message: str, *, execution_id: str = "") -> None:
        super().__init__(message)
        self.execution_id = execution_id


class ConnectError(TransportError):
    """No connection to the server could be made when it was opened."""


class Unavailable(TransportError):
    """Nothing answered: NATS is unreachable, or no replica of the stream or service asked for is there."""


class Timeout(TransportError):
    """A request went out but its outcome was not known in time; it may still take effect."""


class ExecutionError(PlaitError):
    """An execution failed or was aborted, so it has no result: raised by a handle's ``result()``.

    ``status`` is ``"failed"`` or ``"aborted"``; ``failed_node`` names the node that failed it; ``reason`` is the
    node's error or the abort's reason."""

    def __init__(
        self, message: str, *, execution_id: str, status: str, failed_node: str | None = None, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.execution_id, self.status, self.failed_node, self.reason = execution_id, status, failed_node, reason
