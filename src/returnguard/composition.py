"""The composition root: which modules' outbox handlers this application runs.

`create_app` (for the in-process worker on SQLite) and `returnguard worker` both build
their worker from `default_handlers()`, so the API process and a separate worker handle
the same topics. A module that queues a new kind of side effect (an email, a marketplace
or carrier call) adds its own ``register(handlers)`` to `REGISTRARS`; the outbox
package imports none of these modules.
"""

from __future__ import annotations

from collections.abc import Callable

from returnguard.outbox import webhooks
from returnguard.outbox.handlers import Handlers
from returnguard.refunds import sender as refund_sender

REGISTRARS: tuple[Callable[[Handlers], None], ...] = (
    webhooks.register,  # webhook.deliver
    refund_sender.register,  # refund.send
)


def default_handlers() -> Handlers:
    """A fresh set with every topic of the application registered."""
    handlers = Handlers()
    for register in REGISTRARS:
        register(handlers)
    return handlers
