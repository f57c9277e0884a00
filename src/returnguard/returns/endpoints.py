from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, BinaryIO

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.domain.reasons import ReasonCode
from returnguard.domain.returns import ReturnAction, ReturnStatus
from returnguard.errors import InvalidInput, NotFound
from returnguard.kit import storage
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.pagination import decode_cursor, encode_cursor
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import NUL, AwareTimestamp, MoneyOut, PlainText
from returnguard.orders import repository as orders_repo
from returnguard.policies import service as policies
from returnguard.policies.models import Policy, PolicyVersion
from returnguard.policies.schemas import DecisionOut
from returnguard.refunds import repository as refunds_repo
from returnguard.returns import evidence, service
from returnguard.returns import repository as repo
from returnguard.returns.models import Return, Shipment
from returnguard.returns.schemas import (
    ApproveIn,
    EventOut,
    EvidenceOut,
    InspectionIn,
    InspectionOut,
    OfferIn,
    OptionalReasonIn,
    QuantitiesOut,
    ReasonIn,
    ReceiptOut,
    ReceiveIn,
    ReturnIn,
    ReturnLineOut,
    ReturnOut,
    ReturnPage,
    ShipmentIn,
    ShipmentOut,
)

router = APIRouter(prefix="/api/v1/returns", tags=["returns"])

Creator = Annotated[Actor, Depends(require(Permission.RETURNS_CREATE))]
Decider = Annotated[Actor, Depends(require(Permission.RETURNS_DECIDE))]
Shipper = Annotated[Actor, Depends(require(Permission.RETURNS_SHIP))]
Receiver = Annotated[Actor, Depends(require(Permission.RETURNS_RECEIVE))]
Inspector = Annotated[Actor, Depends(require(Permission.RETURNS_INSPECT))]

TRANSITION_ERRORS = problem_responses(401, 403, 404, 409, 422)

log = logging.getLogger(__name__)


def _shipment_out(s: Shipment) -> ShipmentOut:
    cost = None
    if s.label_cost_minor is not None and s.label_cost_currency:
        cost = MoneyOut.from_minor(s.label_cost_minor, s.label_cost_currency)
    return ShipmentOut(
        id=s.id,
        carrier=s.carrier,
        tracking_number=s.tracking_number,
        label_cost=cost,
        label_paid_by=s.label_paid_by,
        created_at=s.created_at,
    )


def return_out(
    session: Session, ret: Return, *, detail: bool = True, new: bool = False
) -> ReturnOut:
    """The API view of a return; lists leave out shipments, receipts and inspections.

    ``new`` says the return was created in this transaction: nothing can have been
    shipped, received, inspected or refunded for it yet, so that is not looked up."""
    return returns_out(session, [ret], detail=detail, new=new)[0]


def returns_out(
    session: Session, rets: Sequence[Return], *, detail: bool = False, new: bool = False
) -> list[ReturnOut]:
    """The API views of many returns with a fixed number of queries, whatever their
    number: channel codes, SKUs and refund counts are each read for all of them at once."""
    codes = orders_repo.channel_codes(session, (r.channel_id for r in rets))
    skus = orders_repo.line_skus(session, (ln.order_line_id for r in rets for ln in r.lines))
    counts = {} if new else refunds_repo.counts_by_return(session, (r.id for r in rets))
    outs = []
    for ret in rets:
        out = ReturnOut(
            id=ret.id,
            number=ret.number,
            status=ret.status,
            version=ret.version,
            order_id=ret.order_id,
            channel=codes.get(ret.channel_id, ""),
            currency=ret.currency,
            buyer_comment=ret.buyer_comment,
            status_reason=ret.status_reason,
            offer=ret.offer,
            lines=[
                ReturnLineOut(
                    id=ln.id,
                    order_line_id=ln.order_line_id,
                    sku=skus.get(ln.order_line_id, ""),
                    reason_code=ln.reason_code,
                    reason_class=ReasonCode(ln.reason_code).reason_class.value,
                    comment=ln.comment,
                    quantities=QuantitiesOut.model_validate(ln),
                )
                for ln in ret.lines
            ],
            allowed_actions=service.allowed_actions(
                session, ret, exact=detail, refunds=counts.get(ret.id, refunds_repo.NONE)
            ),
            requested_at=ret.requested_at,
            updated_at=ret.updated_at,
        )
        if detail and new:
            out.shipments, out.receipts, out.inspections = [], [], []
        elif detail:
            out.shipments = [_shipment_out(s) for s in repo.shipments(session, ret.id)]
            out.receipts = [ReceiptOut.model_validate(r) for r in repo.receipts(session, ret.id)]
            out.inspections = [
                InspectionOut.model_validate(i) for i in repo.inspections(session, ret.id)
            ]
        outs.append(out)
    return outs


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReturnOut,
    responses=problem_responses(400, 401, 403, 404, 422),
)
def create_return(body: ReturnIn, session: SessionDep, actor: Creator) -> ReturnOut:
    """Request a return against an order; the channel's policy decides it unless `decide` is
    false. The decision and its rule trace are at `/returns/{id}/decision`."""
    ret = service.create_return(session, actor, body)
    if body.decide:
        ret, _ = service.decide(session, actor, ret.id)
    return return_out(session, ret, new=True)


@router.post("/{return_id}/decide", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def decide(return_id: uuid.UUID, session: SessionDep, actor: Decider) -> ReturnOut:
    """(Re-)evaluate the channel's published policy on an undecided return and apply it."""
    ret, _ = service.decide(session, actor, return_id)
    return return_out(session, ret)


@router.get(
    "/{return_id}/decision", response_model=DecisionOut, responses=problem_responses(401, 404)
)
def decision(return_id: uuid.UUID, session: SessionDep, actor: Reader) -> DecisionOut:
    """The latest decision: who decided, the outcome, what the policy says for the same
    facts (its reasons, facts used, settings and rule trace), and any override's reason."""
    service.get_return(session, actor.organization_id, return_id)
    record = policies.latest_decision(session, actor.organization_id, return_id)
    if record is None:
        raise NotFound(f"return {return_id} has no policy decision yet")
    version = session.get(PolicyVersion, record.policy_version_id)
    policy = session.get(Policy, version.policy_id) if version else None
    assert version is not None and policy is not None
    return DecisionOut(
        id=record.id,
        outcome=record.outcome,
        path=record.path,
        decided_by=record.decided_by,
        policy_outcome=record.policy_outcome,
        override_reason=record.override_reason,
        reasons=record.reasons,
        missing_facts=record.missing_facts,
        policy_id=policy.id,
        policy_name=policy.name,
        policy_version=version.version,
        facts=record.facts,
        lines=record.lines,
        created_at=record.created_at,
    )


@router.post(
    "/{return_id}/evidence",
    status_code=status.HTTP_201_CREATED,
    response_model=list[EvidenceOut],
    responses=problem_responses(401, 403, 404, 409, 422),
)
def add_evidence(
    return_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    actor: Creator,
    files: Annotated[list[UploadFile], File(description="Photos, videos or PDFs")] = [],  # noqa: B006
    text: Annotated[PlainText | None, Form(max_length=5000)] = None,
    source: Annotated[
        evidence.Source | None,
        Form(
            description="Who the files come from; by default the uploader's role "
            "(inspector, else agent)"
        ),
    ] = None,
) -> list[EvidenceOut]:
    """Attach photos, videos, documents or a written explanation (multipart form).

    Each file's kind and type come from its content; a file already on the return is
    answered with its existing evidence and not kept twice. When the return was waiting
    for evidence and something new arrived, the policy decides it again right away.
    """
    for i, f in enumerate(files):
        # The part's own headers are text the evidence row keeps (PostgreSQL: no NUL).
        if NUL in (f.filename or "") or NUL in (f.content_type or ""):
            raise InvalidInput.field(f"files.{i}", "file name and type must not contain NUL")
    ret = service.get_return(session, actor.organization_id, return_id)
    settings = request.app.state.settings
    added = evidence.add_evidence(
        session,
        actor,
        ret,
        uploads=[
            evidence.Upload(f.filename or "upload", f.content_type or "", f.file) for f in files
        ],
        text=text,
        store=storage.from_settings(settings),
        max_bytes=settings.max_upload_bytes,
        source=source,
    )
    if added.new and ret.status == ReturnStatus.AWAITING_EVIDENCE.value:
        service.decide(session, actor, return_id)
    return [EvidenceOut.model_validate(e) for e in added.shown]


@router.get(
    "/{return_id}/evidence", response_model=list[EvidenceOut], responses=problem_responses(401, 404)
)
def list_evidence(return_id: uuid.UUID, session: SessionDep, actor: Reader) -> list[EvidenceOut]:
    service.get_return(session, actor.organization_id, return_id)
    return [EvidenceOut.model_validate(e) for e in evidence.list_evidence(session, return_id)]


_CHUNK = 256 * 1024
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(_CHUNK):
            yield chunk


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison, `*` matches any stored file."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in {t.removeprefix("W/") for t in tags}


@router.get(
    "/{return_id}/evidence/{evidence_id}/content",
    response_class=Response,
    responses={
        200: {
            "description": "The stored file, as an attachment, with the content type its "
            "bytes were recognised as when it was uploaded",
            "content": {kind: _BINARY for kind in evidence.EXTENSIONS},
        },
        304: {"description": "Not modified: `If-None-Match` names the file's ETag"},
        **problem_responses(401, 404, 503),
    },
)
def download_evidence(
    return_id: uuid.UUID,
    evidence_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    actor: Reader,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Download an evidence file: streamed from storage as an attachment (never shown
    inline), `Content-Type` as detected from its content, ETag from its SHA-256."""
    service.get_return(session, actor.organization_id, return_id)
    found = evidence.get_evidence(session, actor.organization_id, return_id, evidence_id)
    if found is None:
        raise NotFound(f"evidence {evidence_id} not found on return {return_id}")
    if not found.storage_key or not found.content_type:
        raise NotFound(f"evidence {evidence_id} is a text, not a file; it is in `text`")
    headers: dict[str, Any] = {
        "Cache-Control": "private",
        "X-Content-Type-Options": "nosniff",
    }
    if found.sha256:
        headers["ETag"] = f'"{found.sha256}"'
        if _etag_matches(if_none_match, headers["ETag"]):
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    store = storage.from_settings(request.app.state.settings)
    try:
        blob = store.open(found.storage_key)
    except (OSError, ValueError):
        log.error("evidence %s: stored file %s is missing", found.id, found.storage_key)
        raise NotFound(f"the file of evidence {evidence_id} is missing from storage") from None
    name = evidence.download_name(found.filename, found.content_type)
    headers["Content-Disposition"] = evidence.content_disposition(name)
    headers["Content-Length"] = str(blob.size)
    return StreamingResponse(_chunks(blob.stream), media_type=found.content_type, headers=headers)


@router.get("", response_model=ReturnPage, responses=problem_responses(401, 422))
def list_returns(
    session: SessionDep,
    actor: Reader,
    status_: Annotated[list[ReturnStatus] | None, Query(alias="status")] = None,
    order_id: uuid.UUID | None = None,
    channel: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    ] = None,
    rma: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=32,
            description="The return's RMA number (`number`), case-insensitive",
        ),
    ] = None,
    requested_from: AwareTimestamp | None = None,
    requested_to: AwareTimestamp | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReturnPage:
    """List returns, newest first, filtered by status, order, channel, RMA number or
    request date."""
    channel_id = None
    if channel:
        from returnguard.orders.service import UnknownChannel

        found = orders_repo.channel_by_code(session, actor.organization_id, channel)
        if found is None:
            # A filter value, not the resource: 422 naming it (404 is not documented here).
            raise UnknownChannel.field("channel", f"no channel with code {channel!r}")
        channel_id = found.id
    rows = repo.list_returns(
        session,
        actor.organization_id,
        statuses=[s.value for s in status_ or []],
        order_id=order_id,
        channel_id=channel_id,
        number=rma.upper() if rma is not None else None,
        requested_from=requested_from,
        requested_to=requested_to,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    return ReturnPage(
        items=returns_out(session, page),
        next_cursor=encode_cursor(page[-1].requested_at, page[-1].id)
        if len(rows) > limit
        else None,
    )


@router.get("/by-rma/{rma}", response_model=ReturnOut, responses=problem_responses(401, 404))
def get_return_by_rma(
    rma: Annotated[str, Path(max_length=32, description="The RMA number, case-insensitive")],
    session: SessionDep,
    actor: Reader,
) -> ReturnOut:
    """The return with this RMA number (its `number`, e.g. `RMA-7KQ2M9XP`)."""
    ret = repo.by_number(session, actor.organization_id, rma.upper())
    if ret is None:
        raise NotFound(f"no return {rma!r}")
    return return_out(session, ret)


@router.get("/{return_id}", response_model=ReturnOut, responses=problem_responses(401, 404))
def get_return(return_id: uuid.UUID, session: SessionDep, actor: Reader) -> ReturnOut:
    return return_out(session, service.get_return(session, actor.organization_id, return_id))


@router.get(
    "/{return_id}/events", response_model=list[EventOut], responses=problem_responses(401, 404)
)
def return_events(return_id: uuid.UUID, session: SessionDep, actor: Reader) -> list[EventOut]:
    """The return's timeline: every change, who made it, and before → after."""
    service.get_return(session, actor.organization_id, return_id)
    rows = audit.events_for_return(session, actor.organization_id, return_id)
    return [EventOut.model_validate(e) for e in rows]


@router.post("/{return_id}/approve", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def approve(
    return_id: uuid.UUID, body: ApproveIn, session: SessionDep, actor: Decider
) -> ReturnOut:
    return return_out(session, service.approve(session, actor, return_id, body))


@router.post("/{return_id}/reject", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def reject(return_id: uuid.UUID, body: ReasonIn, session: SessionDep, actor: Decider) -> ReturnOut:
    return return_out(session, service.reject(session, actor, return_id, body.reason))


@router.post("/{return_id}/offer", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def offer(return_id: uuid.UUID, body: OfferIn, session: SessionDep, actor: Decider) -> ReturnOut:
    """Offer an alternative first: keep the item for a partial refund, a coupon, a replacement."""
    return return_out(session, service.offer(session, actor, return_id, body))


@router.post("/{return_id}/accept-offer", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def accept_offer(return_id: uuid.UUID, session: SessionDep, actor: Decider) -> ReturnOut:
    return return_out(session, service.accept_offer(session, actor, return_id))


@router.post("/{return_id}/decline-offer", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def decline_offer(return_id: uuid.UUID, session: SessionDep, actor: Decider) -> ReturnOut:
    return return_out(session, service.decline_offer(session, actor, return_id))


@router.post("/{return_id}/cancel", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def cancel(
    return_id: uuid.UUID, session: SessionDep, actor: Decider, body: OptionalReasonIn | None = None
) -> ReturnOut:
    reason = body.reason if body else ""
    return return_out(session, service.cancel(session, actor, return_id, reason))


def _simple_route(path: str, action: ReturnAction, summary: str) -> None:
    def handler(
        return_id: uuid.UUID,
        session: SessionDep,
        actor: Decider,
        body: OptionalReasonIn | None = None,
    ) -> ReturnOut:
        reason = body.reason if body else ""
        return return_out(session, service.simple(session, actor, return_id, action, reason))

    handler.__name__ = action.value
    router.add_api_route(
        f"/{{return_id}}/{path}",
        handler,
        methods=["POST"],
        response_model=ReturnOut,
        responses=TRANSITION_ERRORS,
        summary=summary,
    )


_simple_route("request-evidence", ReturnAction.REQUEST_EVIDENCE, "Ask the buyer for evidence")
_simple_route("submit-evidence", ReturnAction.SUBMIT_EVIDENCE, "Evidence received; to review")
_simple_route("review", ReturnAction.SEND_TO_REVIEW, "Send to human review")
_simple_route(
    "resolve-returnless", ReturnAction.RESOLVE_RETURNLESS, "Resolve without the goods coming back"
)
_simple_route("mark-lost", ReturnAction.MARK_LOST, "The carrier lost the parcel")
_simple_route("expire", ReturnAction.EXPIRE, "Approved but never shipped in time")
_simple_route("dispute", ReturnAction.DISPUTE, "A claim or chargeback was opened")
_simple_route("close", ReturnAction.CLOSE, "Close the return")


@router.post("/{return_id}/shipments", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def add_shipment(
    return_id: uuid.UUID, body: ShipmentIn, session: SessionDep, actor: Shipper
) -> ReturnOut:
    """Register the return parcel's carrier and tracking number."""
    return return_out(session, service.add_shipment(session, actor, return_id, body))


@router.post("/{return_id}/receive", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def receive(
    return_id: uuid.UUID, body: ReceiveIn, session: SessionDep, actor: Receiver
) -> ReturnOut:
    """Record units received at the return center (partial receipts allowed)."""
    return return_out(session, service.receive(session, actor, return_id, body))


@router.post("/{return_id}/inspections", response_model=ReturnOut, responses=TRANSITION_ERRORS)
def inspect(
    return_id: uuid.UUID, body: InspectionIn, session: SessionDep, actor: Inspector
) -> ReturnOut:
    """Record an inspection: units passed and failed per line, grade and disposition."""
    return return_out(session, service.inspect(session, actor, return_id, body))
