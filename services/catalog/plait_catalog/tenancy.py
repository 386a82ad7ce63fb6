"""A catalog query answers for the project and domain of the subject it was asked on, and for no other."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from plait.protocol import subjects

RequestT = TypeVar("RequestT", bound=msgspec.Struct)


class OtherTenant(ValueError):
    """A request whose body names a project or domain other than its subject's."""


def query_of_subject(subject: str) -> tuple[str, str, str]:
    """(project, domain, kind) of a catalog query subject ``plait.catalog.<project>.<domain>.<kind>``."""
    project, domain = subjects.tenant_of_subject(subject)
    return project, domain, subject.split(".", 4)[4]


def confined(request: RequestT, project: str, domain: str) -> RequestT:
    """``request`` for ``project`` and ``domain``: a body that names none gets them; one that names others is
    refused with ``OtherTenant``."""
    named = {"project": getattr(request, "project", None), "domain": getattr(request, "domain", None)}
    wanted = {"project": project, "domain": domain}
    for field, value in named.items():
        if value and value != wanted[field]:
            raise OtherTenant(
                f"the request names {field} '{value}' but was asked on the subject of {field} '{wanted[field]}'"
            )
    return msgspec.structs.replace(request, **wanted)
