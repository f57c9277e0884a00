"""FastAPI dependencies: one session (and transaction) per request, and the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor, authenticate
from returnguard.kit.db import Database
from returnguard.kit.egress import Egress


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


_READING = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed when the handler returns, else rolled back.

    Scoped to the path function, so the commit happens before the response is sent:
    a client that sees 2xx knows the change is durable.
    """
    db = get_database(request)
    # Reading requests take no write lock (SQLite), so they never queue behind writers.
    with db.session(read_only=request.method in _READING) as session:
        yield session
    notify = getattr(request.app.state, "notify_worker", None)
    if notify is not None:
        notify()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_egress(request: Request) -> Egress:
    """Where the seller's URLs may point, from the app's settings."""
    return Egress.from_settings(request.app.state.settings)


EgressDep = Annotated[Egress, Depends(get_egress)]


def get_actor(
    session: SessionDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Actor:
    return authenticate(session, authorization)


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require(permission: Permission) -> Callable[[Actor], Actor]:
    def dependency(actor: CurrentActor) -> Actor:
        actor.require(permission)
        return actor

    return dependency


Reader = Annotated[Actor, Depends(require(Permission.READ))]
