"""The API server's error answers: ``Status`` objects with the code, reason and message a real server gives."""

from __future__ import annotations

from typing import Any

from tests.helpers.kube_api.validation import Cause


class ApiError(Exception):
    """An error answer; ``status`` is the Status object sent with HTTP code ``code``."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            **({"details": details} if details is not None else {}),
            "code": code,
        }


def qualified(resource: str, group: str) -> str:
    """``jobs.batch``, or ``pods`` for the core group: how a server names a resource in its messages."""
    return f"{resource}.{group}" if group else resource


def success(resource: str, group: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": resource, "uid": uid},
    }


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return _about_object(409, "AlreadyExists", resource, group, name, "already exists")


def not_found(resource: str, group: str, name: str) -> ApiError:
    return _about_object(404, "NotFound", resource, group, name, "not found")


def no_such_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    summary = ", ".join(f"{cause.field}: {cause.message}" for cause in causes)
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {summary}' if group else f'{kind} "{name}" is invalid: {summary}',
        {"name": name, "group": group, "kind": kind, "causes": [cause.as_status_cause() for cause in causes]},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


def expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def _about_object(code: int, reason: str, resource: str, group: str, name: str, what: str) -> ApiError:
    details = {"name": name, "group": group, "kind": resource}
    return ApiError(code, reason, f'{qualified(resource, group)} "{name}" {what}', details)
