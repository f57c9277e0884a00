"""What the outbox worker runs for each topic, registered by the module that owns the topic.

The outbox knows no topic. A module that queues outbox messages offers a
``register(handlers)`` function next to its own code (webhooks in outbox/webhooks.py,
provider refunds in refunds/sender.py), and the composition root
(returnguard/composition.py) calls each of them to build the set that the API process
and ``returnguard worker`` both run. Nothing in this package imports those modules, so
adding a topic touches no outbox code and no import runs in a circle.

A handler is registered as a factory: the worker calls it once with what the worker
owns (its database, settings and HTTP client) and keeps the handler it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from returnguard.config import Settings
from returnguard.kit.db import Database


@dataclass(frozen=True)
class Outcome:
    """How one attempt went; a failure with ``retry`` is tried again after a backoff."""

    ok: bool
    error: str | None = None
    retry: bool = True


# (outbox message id, payload, attempt number) -> outcome
Handler = Callable[[int, dict[str, Any], int], Outcome]


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use: the worker's database, settings and HTTP connection pool."""

    db: Database
    settings: Settings
    http: httpx.Client


HandlerFactory = Callable[[HandlerContext], Handler]


class Handlers:
    """Topic -> handler factory; one topic has one handler."""

    def __init__(self) -> None:
        self._factories: dict[str, HandlerFactory] = {}

    def register(self, topic: str, factory: HandlerFactory) -> None:
        """Run ``factory(context)``'s handler for every message of ``topic``."""
        if topic in self._factories:
            raise ValueError(f"outbox topic {topic!r} already has a handler")
        self._factories[topic] = factory

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def bind(self, context: HandlerContext) -> dict[str, Handler]:
        """The handlers of one worker, made with that worker's resources."""
        return {topic: factory(context) for topic, factory in self._factories.items()}
