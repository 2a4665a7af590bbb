"""The Sophia services: twelve HTTP microservices built from one app factory.

``create_app(ServiceSettings(...))`` builds any of them; ``python -m sophia.services --service NAME --kind KIND
(--port P | --fd N)`` runs one as a process. ``sophia.services.sandbox.ensure_sandbox_schema(dsn)`` prepares the
sandbox outbox that the comms and crm services deliver into.

This package is the product the release engine ships: it depends on no other part of ``sophia``. Its names are
imported lazily so that ``sophia.services.sandbox`` can be used without loading the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sophia.services.app import create_app
    from sophia.services.settings import SERVICE_KINDS, ServiceSettings

__all__ = ["SERVICE_KINDS", "ServiceSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sophia.services.app import create_app

        return create_app
    if name in {"ServiceSettings", "SERVICE_KINDS"}:
        from sophia.services import settings

        return getattr(settings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
