"""Keep secrets out of messages: passwords, API keys and connection strings never reach logs or JSON output.

The rules are the engine's (``sophia.engine.redact``), so a database error reads the same wherever it is shown.
"""

from __future__ import annotations

from sophia.engine.redact import redact

__all__ = ["redact"]
