"""The buyer-facing return policy page at a public address: no key, rate-limited, cached.

`GET /policies/{organization_id}/{channel_code}` is what a shop links to from its
checkout and footer. Organizations have no slug, so the address names the organization
by its id, which never changes and is unique; together with the channel code (unique in
the organization, never renamed) it is a stable address without a new column. The id
reveals nothing: the page shows what the shop shows its buyers anyway, and an unknown
organization or channel (or a malformed id) gets the same 404.

Every answer names the policy version it was rendered from in its `ETag`, so a browser
or CDN revalidates cheaply (304) and a newly published version shows up within
`CACHE_MAX_AGE` seconds. Requests are limited per client address (`RATE_LIMIT`, in
memory, per process): the page is public, and rendering it asks the engine dozens of
times.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from returnguard import __version__
from returnguard.domain.policy.document import Payer, PolicyDocument
from returnguard.domain.reasons import ReasonClass, ReasonCode
from returnguard.errors import InvalidInput, NotFound
from returnguard.kit.deps import SessionDep
from returnguard.kit.problem import problem_response, problem_responses
from returnguard.orders.models import Channel
from returnguard.orders.repository import channel_by_code
from returnguard.policies import page as page_module
from returnguard.policies import service
from returnguard.policies.page import (
    PromiseKind,
    language_from_header,
    render_policy_page,
    resolve_language,
)
from returnguard.policies.page_messages import CATALOGUES

RATE_LIMIT = "60/minute"
"""Per client address; `Settings.policy_page_rate_limit` overrides it where it exists."""
CACHE_MAX_AGE = 300
"""Seconds a browser or CDN may show the page without asking again."""

PageFormat = Literal["html", "text", "json"]
_MEDIA_TYPES: dict[str, str] = {
    "html": "text/html; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}

router = APIRouter(tags=["policy page"])


# ----------------------------------------------------------------------- the JSON form


class AmountOut(BaseModel):
    amount: str = Field(description="Decimal string, e.g. `150.00`")
    currency: str


class FeeOut(BaseModel):
    percent: str
    cap: str | None = Field(description="At most this much, in the channel's currency")
    opened_only: bool = Field(description="Only for an item that comes back opened or used")


class PromiseOut(BaseModel):
    """One promise the page makes, as data; `text` is the sentence that makes it."""

    kind: PromiseKind
    reason_class: ReasonClass | None = Field(description="None when the codes span classes")
    reason_codes: list[ReasonCode]
    text: str
    first_day: int = Field(description="Days after delivery from which the promise holds")
    last_day: int | None = Field(description="Last day it holds; null: no end")
    payer: Payer | None
    fee: FeeOut | None
    refunded: bool | None = Field(description="outbound_shipping: refunded or not")
    photos: int
    video: bool
    explanation: bool
    value_from: AmountOut | None = Field(description="Items worth this much or more")
    value_below: AmountOut | None = Field(description="Items worth less than this")
    categories: list[str]
    skus: list[str]
    signature: bool
    whole_return: bool = Field(description="inspection: the value is the whole return's")


class PageBlockOut(BaseModel):
    kind: Literal["p", "ul"]
    items: list[str]


class PageSectionOut(BaseModel):
    id: str
    heading: str
    blocks: list[PageBlockOut]


class PolicyPageOut(BaseModel):
    """`format=json`: the page as plain-text sections, and its promises as data."""

    language: str
    title: str
    currency: str
    buyer_country: str | None
    sections: list[PageSectionOut]
    promises: list[PromiseOut]


# ---------------------------------------------------------------------- rate limiting


class PageRateLimiter:
    """A moving-window limit per client address, kept in this process's memory."""

    def __init__(self, rate: str = RATE_LIMIT) -> None:
        self.item: RateLimitItem = parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, address: str) -> int | None:
        """Count one request; None when it is allowed, else seconds until one will be."""
        if self._limiter.hit(self.item, "policy-page", address):
            return None
        reset = self._limiter.get_window_stats(self.item, "policy-page", address).reset_time
        return max(1, math.ceil(reset - time.time()))


_limiter_lock = threading.Lock()


def limiter_for(app: FastAPI) -> PageRateLimiter:
    """The app's limiter, made on first use (one per app, so tests do not share counts)."""
    with _limiter_lock:
        limiter: PageRateLimiter | None = getattr(app.state, "policy_page_limiter", None)
        if limiter is None:
            settings = getattr(app.state, "settings", None)
            rate = getattr(settings, "policy_page_rate_limit", None) or RATE_LIMIT
            limiter = PageRateLimiter(rate)
            app.state.policy_page_limiter = limiter
        return limiter


# ------------------------------------------------------------------------- rendering


def _renderer_digest() -> str:
    # Part of every ETag: a release that changes the wording or the page logic must not
    # be answered with 304 for a page rendered by the one before.
    template = Path(page_module.__file__).parent.parent / "templates" / "policy_page.html.j2"
    digest = hashlib.sha256(__version__.encode())
    digest.update(json.dumps(CATALOGUES, sort_keys=True).encode())
    for source in (Path(page_module.__file__), template):
        digest.update(source.read_bytes() if source.exists() else b"")
    return digest.hexdigest()


_RENDERER = _renderer_digest()


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def channel_page(
    request: Request,
    session: Session,
    channel: Channel,
    *,
    language: str | None,
    accept_language: str | None,
    buyer_country: str | None,
    format: PageFormat,
    if_none_match: str | None,
    public: bool,
    start_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The channel's published policy as a buyer reads it, with its caching headers.

    Language: `language`, else the first language of `accept_language` the page is
    written in, else the channel's. A request whose `If-None-Match` names the current
    ETag gets 304 without rendering.
    """
    version = service.policy_for_channel(session, channel)
    tag = language or language_from_header(accept_language) or channel.language
    key, locale = resolve_language(tag)
    country = buyer_country.upper() if buyer_country else None
    etag = (
        '"'
        + hashlib.sha256(
            "|".join(
                [
                    _RENDERER,
                    str(version.id),
                    str(channel.id),
                    channel.name,
                    str(locale),
                    country or "",
                    format,
                    start_url or "",
                ]
            ).encode()
        ).hexdigest()[:40]
        + '"'
    )
    cache = f"public, max-age={CACHE_MAX_AGE}" if public else "private, no-cache"
    common = {
        "ETag": etag,
        "Cache-Control": cache,
        "Vary": "Accept-Language",
        "Content-Language": key,
        **(headers or {}),
    }
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers=common)
    try:
        page = render_policy_page(
            PolicyDocument.model_validate(version.document),
            language=tag,
            currency=channel.currency,
            buyer_country=country,
            shop_name=channel.name,
            start_url=start_url,
        )
    except ValueError as exc:
        raise InvalidInput.field("start_url", str(exc)) from None
    if format == "json":
        body = PolicyPageOut.model_validate(page.to_json()).model_dump(mode="json")
        return JSONResponse(body, headers=common)
    content = page.html if format == "html" else page.text
    return Response(content, media_type=_MEDIA_TYPES[format], headers=common)


def page_responses(*errors: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of a policy-page route: the page in three formats, or 304."""
    return {
        200: {
            "model": PolicyPageOut,
            "content": {"text/html": {}, "text/plain": {}},
            "description": "The buyer-facing return policy (HTML, plain text or JSON)",
            "headers": {
                "ETag": {
                    "description": "Changes with the policy version, language, buyer "
                    "country and format",
                    "schema": {"type": "string"},
                },
                "Cache-Control": {"schema": {"type": "string"}},
                "Content-Language": {"schema": {"type": "string"}},
            },
        },
        304: {"description": "Not modified: `If-None-Match` names the current ETag"},
        **problem_responses(*errors),
    }


# ------------------------------------------------------------------------- the route

_NOT_FOUND = "no return policy page at this address"


@router.get(
    "/policies/{organization_id}/{channel_code}",
    response_class=Response,
    responses={
        **page_responses(404, 422, 429),
        404: {
            **problem_responses(404)[404],
            "description": "No such organization or channel (the answer does not say which)",
        },
        429: {
            **problem_responses(429)[429],
            "description": "Too many requests from this address; `Retry-After` says when "
            "to try again",
            "headers": {"Retry-After": {"description": "Seconds", "schema": {"type": "integer"}}},
        },
    },
)
def public_policy_page(
    request: Request,
    organization_id: Annotated[str, PathParam(description="The shop's organization id")],
    channel_code: Annotated[str, PathParam(description="The channel's code")],
    session: SessionDep,
    language: Annotated[
        str | None, Query(max_length=35, description="e.g. `de`; default: Accept-Language")
    ] = None,
    buyer_country: Annotated[
        str | None,
        Query(pattern="^[A-Za-z]{2}$", description="ISO country of the buyer, e.g. `DE`"),
    ] = None,
    format: Annotated[PageFormat, Query()] = "html",
    accept_language: Annotated[str | None, Header(max_length=500)] = None,
    if_none_match: Annotated[str | None, Header(max_length=2000)] = None,
) -> Response:
    """The return policy of a shop's channel, for its buyers: public, no API key.

    Window for buyer's-choice and for faulty items, condition, who pays, fees, how to
    start, refund timing and checks, in `language` (else the browser's Accept-Language,
    else the channel's language). With `buyer_country` in the EU, UK or Japan it states
    the law there. `format=json` gives the sections as text and every promise as data.
    Cacheable: `ETag` and `Cache-Control: public`; limited per client address (429 with
    `Retry-After`).
    """
    address = request.client.host if request.client else "unknown"
    retry_after = limiter_for(request.app).hit(address)
    if retry_after is not None:
        return problem_response(
            request,
            status=429,
            code="rate_limited",
            title="Too many requests",
            detail=f"too many requests from your address; try again in {retry_after} s",
            extra={"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
    try:
        organization = uuid.UUID(organization_id)
    except ValueError:
        raise NotFound(_NOT_FOUND) from None
    channel = channel_by_code(session, organization, channel_code)
    if channel is None:
        raise NotFound(_NOT_FOUND)
    return channel_page(
        request,
        session,
        channel,
        language=language,
        accept_language=accept_language,
        buyer_country=buyer_country,
        format=format,
        if_none_match=if_none_match,
        public=True,
    )


def public_url(request: Request, channel: Channel, **query: str | None) -> str:
    """The public address of the channel's page, with the query parameters given."""
    url = request.url_for(
        "public_policy_page",
        organization_id=str(channel.organization_id),
        channel_code=channel.code,
    )
    return str(url.include_query_params(**{k: v for k, v in query.items() if v}))
