"""The channel used when none is configured: wants nothing, sends nothing."""

from __future__ import annotations

from sophia.engine.model import Notification


class NopNotifier:
    name = "nop"

    def wants(self, notification: Notification) -> bool:
        return False

    async def send(self, notification: Notification) -> None:
        return None
