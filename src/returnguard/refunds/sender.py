"""Pays sent refunds out through their provider, and checks ReturnGuard against it.

The outbox worker calls `RefundSender.handle` for each `refund.send` message: the refund
is read in one short transaction, the provider is called outside any transaction with
the refund's own key (`rg-<refund id>`), and the answer is recorded in another. When
the provider cannot be reached or times out the outcome is unknown, so the refund stays
pending and the call is retried later with the same key: the provider answers the
retry with the refund it made the first time, never a second one.

`reconcile` asks the provider about every recent refund and lists those whose state
differs from ours (`returnguard refunds reconcile`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from returnguard.auth.actor import Actor
from returnguard.kit.db import Database, utcnow
from returnguard.kit.secrets import (
    Keyring,
    SecretUnreadable,
    default_keyring,
    key_id_of,
    keyring_for,
    warn_if_unsealed,
)
from returnguard.orders.models import Order, OrderLine
from returnguard.outbox.handlers import Handler, HandlerContext, Handlers, Outcome
from returnguard.outbox.models import OutboxMessage
from returnguard.refunds import service
from returnguard.refunds.accounts import credentials_of
from returnguard.refunds.models import FAILED, PENDING, SUCCEEDED, Refund, RefundProvider
from returnguard.refunds.providers import adapter_for
from returnguard.refunds.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderState,
    RefundAdapter,
    RefundLineItem,
    RefundRequest,
    UnknownAnswer,
)

log = logging.getLogger("returnguard.refunds")
SENDER_LABEL = "refund sender"
# Refusals that an earlier call of ours (that got through) would also cause.
_MAYBE_OURS = frozenset({"already_refunded", "exceeds_refundable_at_provider"})


def provider_key(refund: Refund) -> str:
    """The idempotency key the provider sees: one per refund, the same on every retry."""
    return f"rg-{refund.id}"


@dataclass(frozen=True)
class _Job:
    refund_id: uuid.UUID
    organization_id: uuid.UUID
    kind: str
    settings: dict[str, Any]
    credentials: dict[str, Any] = field(repr=False)  # opened: never in a log line
    request: RefundRequest
    reference: str | None


def _job(session: Any, refund: Refund, keyring: Keyring) -> _Job | None:
    """What sending or looking up ``refund`` needs, the credentials opened (raises
    SecretUnreadable when they do not open)."""
    provider = session.get(RefundProvider, refund.provider_id) if refund.provider_id else None
    order = session.get(Order, refund.order_id)
    if provider is None or order is None or not order.payment_reference:
        return None
    external = {
        str(line.id): line.external_id
        for line in session.scalars(select(OrderLine).where(OrderLine.order_id == order.id))
    }
    request = RefundRequest(
        refund_id=str(refund.id),
        idempotency_key=provider_key(refund),
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        payment_reference=order.payment_reference,
        order_external_id=order.external_id,
        note=refund.reason,
        lines=tuple(
            RefundLineItem(external.get(part["order_line_id"], ""), int(part["quantity"]))
            for part in refund.lines
        ),
    )
    return _Job(
        refund.id,
        refund.organization_id,
        provider.kind,
        dict(provider.settings),
        credentials_of(keyring, provider),
        request,
        refund.provider_reference,
    )


def register(handlers: Handlers) -> None:
    """Pay `refund.send` messages through the refund's provider (`RefundSender.handle`)."""
    handlers.register(service.REFUND_TOPIC, _sender)


def _sender(context: HandlerContext) -> Handler:
    keyring = keyring_for(context.settings, context.db.url)
    try:
        _check_secrets(context.db, keyring)
    except SQLAlchemyError as exc:  # only a warning: the worker starts all the same
        log.warning("could not check stored secrets: %s", type(exc).__name__)
    return RefundSender(context.db, context.http, keyring).handle


def _check_secrets(db: Database, keyring: Keyring) -> None:
    """At worker start: warn about credentials left in plain text or under a missing key."""
    with db.session(read_only=True) as session:
        stored = session.scalars(
            select(RefundProvider.credentials).where(RefundProvider.credentials != "")
        )
        found = [key_id_of(c) for c in stored]
    warn_if_unsealed("refund provider credential set(s)", found, keyring)


class RefundSender:
    def __init__(self, db: Database, http: httpx.Client, keyring: Keyring | None = None) -> None:
        self.db = db
        self.http = http
        self.keyring = keyring or default_keyring(db.url)

    def adapter(self, job: _Job) -> RefundAdapter:
        return adapter_for(job.kind, job.settings, job.credentials, self.http)

    def handle(self, message_id: int, payload: dict[str, Any], attempt: int) -> Outcome:
        refund_id = uuid.UUID(payload["refund_id"])
        with self.db.session() as session:
            refund = session.get(Refund, refund_id)
            if refund is None:
                return Outcome(False, f"refund {refund_id} not found", retry=False)
            if refund.status != PENDING:
                return Outcome(True)  # already settled (by an earlier attempt or reconcile)
            unreadable: ProviderError | None = None
            try:
                job = _job(session, refund, self.keyring)
            except SecretUnreadable as exc:
                unreadable = ProviderError(f"provider credentials unreadable: {exc}")
        if unreadable is not None:
            # Nothing is sent: the refund stays pending, says why, and is tried again (a
            # missing key, once configured, lets it through).
            log.error("refund %s not sent: %s", refund_id, unreadable)
            self._note_error(refund_id, unreadable)
            return Outcome(False, str(unreadable))
        if job is None:
            return Outcome(False, "the refund's provider or payment is gone", retry=False)
        adapter = self.adapter(job)
        try:
            if job.reference is not None:
                # The provider accepted it earlier and was still processing: ask again.
                result = adapter.lookup(job.request, job.reference)
                if result is None:
                    raise ProviderError(f"{job.kind}: refund {job.reference} not found")
            else:
                result = adapter.send(job.request)
                if result.state is ProviderState.FAILED and result.code in _MAYBE_OURS:
                    result = self._ours_after_all(adapter, job) or result
        except ProviderError as exc:
            self._note_error(job.refund_id, exc)
            return Outcome(False, str(exc), retry=exc.retry)
        return self.apply(job.refund_id, result)

    def _ours_after_all(self, adapter: RefundAdapter, job: _Job) -> ProviderResult | None:
        """'Already refunded' may mean our own earlier call got through: look for it."""
        try:
            return adapter.lookup(job.request, None)
        except UnknownAnswer:
            raise  # ours may be there, in a state we cannot read: stays pending
        except ProviderError:
            return None

    def _note_error(self, refund_id: uuid.UUID, exc: ProviderError) -> None:
        """The outcome is unknown: the refund stays pending and says why. An answer we
        cannot read is kept as it came, with the reference it named (so the next
        attempt looks that refund up instead of sending again)."""
        with self.db.session() as session:
            refund = session.get(Refund, refund_id, with_for_update=True)
            if refund is None or refund.status != PENDING:
                return
            refund.last_error, refund.updated_at = str(exc)[:2000], utcnow()
            if isinstance(exc, UnknownAnswer):
                refund.provider_response = exc.answer
                refund.provider_reference = exc.reference or refund.provider_reference
                refund.provider_status = exc.provider_status or refund.provider_status

    def apply(self, refund_id: uuid.UUID, result: ProviderResult) -> Outcome:
        """Record the provider's answer on a pending refund (once; later answers are moot)."""
        with self.db.session() as session:
            refund = session.get(Refund, refund_id, with_for_update=True)
            if refund is None or refund.status != PENDING:
                return Outcome(True)
            actor = Actor.system(refund.organization_id, SENDER_LABEL)
            if result.unsent_minor is not None and result.state is not ProviderState.FAILED:
                # Paid (or being paid) less than granted by the provider's rounding; the
                # ledger books what was actually sent.
                refund.unsent_minor = result.unsent_minor
            if result.state is ProviderState.SUCCEEDED:
                service.mark_succeeded(
                    session,
                    actor,
                    refund,
                    reference=result.reference,
                    provider_status=result.provider_status,
                )
                return Outcome(True)
            if result.state is ProviderState.FAILED:
                service.mark_failed(
                    session,
                    actor,
                    refund,
                    failure=result.message or result.code or "refused by the provider",
                    code=result.code or "failed",
                    reference=result.reference,
                    provider_status=result.provider_status,
                )
                return Outcome(True)
            refund.provider_reference = result.reference or refund.provider_reference
            refund.provider_status, refund.updated_at = result.provider_status, utcnow()
            refund.last_error = None
            return Outcome(False, f"{refund.provider} is still processing the refund")


@dataclass(frozen=True)
class Mismatch:
    refund_id: uuid.UUID
    organization_id: uuid.UUID
    provider: str
    ours: str
    theirs: str  # succeeded / pending / failed / missing / unknown
    reference: str | None
    note: str
    fixed: bool = False


def reconcile(
    db: Database,
    http: httpx.Client,
    *,
    organization_id: uuid.UUID | None = None,
    since: timedelta = timedelta(days=30),
    apply: bool = False,
    in_flight: timedelta = timedelta(minutes=10),
    keyring: Keyring | None = None,
) -> tuple[int, list[Mismatch]]:
    """Compare every provider refund sent since ``since`` with the provider; returns how
    many were checked and the mismatches. With ``apply``, a pending refund takes the
    provider's final answer, and one the provider never received is queued again (same
    key). Succeeded or failed refunds are never changed here: a person decides."""
    with db.session() as session:
        stmt = select(Refund).where(
            Refund.provider_id.is_not(None),
            Refund.provider != service.MANUAL,  # a named manual account has no API to ask
            Refund.status.in_((PENDING, SUCCEEDED, FAILED)),
            Refund.created_at >= utcnow() - since,
        )
        if organization_id is not None:
            stmt = stmt.where(Refund.organization_id == organization_id)
        jobs = []
        sender = RefundSender(db, http, keyring)
        mismatches: list[Mismatch] = []
        unreadable = 0
        for refund in session.scalars(stmt.order_by(Refund.created_at)):
            try:
                job = _job(session, refund, sender.keyring)
            except SecretUnreadable as exc:
                mismatches.append(
                    Mismatch(
                        refund.id,
                        refund.organization_id,
                        refund.provider,
                        refund.status,
                        "unknown",
                        refund.provider_reference,
                        f"could not ask the provider: {exc}",
                    )
                )
                unreadable += 1
                continue
            if job is not None:
                jobs.append((job, refund.status, refund.sent_at))
    for job, ours, sent_at in jobs:
        try:
            found = sender.adapter(job).lookup(job.request, job.reference)
            theirs = found.state.value if found is not None else "missing"
        except ProviderError as exc:
            found, theirs = None, "unknown"
            note = f"could not ask the provider: {exc}"
        else:
            note = ""
        if theirs == ours or (ours == FAILED and theirs == "missing"):
            continue
        just_sent = sent_at is not None and utcnow() - sent_at < in_flight
        if ours == PENDING and theirs == "missing" and just_sent:
            continue  # the worker is on it
        fixed = False
        if apply and ours == PENDING and found is not None and theirs != "pending":
            sender.apply(job.refund_id, found)
            fixed = True
        elif apply and ours == PENDING and theirs == "missing":
            with db.session() as session:
                row = session.get(Refund, job.refund_id, with_for_update=True)
                if row is not None and row.status == PENDING:
                    _requeue(session, row)
                    fixed = True
        mismatches.append(
            Mismatch(
                job.refund_id,
                job.organization_id,
                job.kind,
                ours,
                theirs,
                found.reference if found is not None else job.reference,
                note or _explain(ours, theirs),
                fixed,
            )
        )
    return len(jobs) + unreadable, mismatches


def _requeue(session: Any, refund: Refund) -> None:
    waiting = session.scalar(
        select(OutboxMessage.id).where(
            OutboxMessage.topic == service.REFUND_TOPIC,
            OutboxMessage.status == "pending",
            OutboxMessage.payload["refund_id"].as_string() == str(refund.id),
        )
    )
    if waiting is None:
        service.queue_send(session, refund)


def _explain(ours: str, theirs: str) -> str:
    if ours == FAILED and theirs == SUCCEEDED:
        return (
            "paid at the provider but failed here: its units were freed; check for a double refund"
        )
    if ours == SUCCEEDED and theirs == "missing":
        return "paid here but the provider has no such refund"
    if ours == PENDING and theirs == "missing":
        return "sent but the provider never received it; --apply sends it again with the same key"
    if ours == PENDING:
        return f"the provider says {theirs}; --apply records it"
    return f"ReturnGuard says {ours}, the provider says {theirs}"
