from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import Field

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput, ReturnGuardError
from returnguard.fx import service
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import CurrencyCode, DecimalString, IsoDay, OutModel, StrictModel

router = APIRouter(prefix="/api/v1/fx-rates", tags=["fx"])
Manager = Annotated[Actor, Depends(require(Permission.FX_MANAGE))]


class FxRateIn(StrictModel):
    day: IsoDay
    base: CurrencyCode
    quote: CurrencyCode
    rate: DecimalString = Field(
        description="Units of quote per one unit of base", examples=["1.0856"]
    )


class FxRateOut(OutModel):
    id: uuid.UUID
    day: date
    base: str
    quote: str
    rate: str
    source: str
    created_at: datetime


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FxRateOut,
    responses=problem_responses(401, 403, 422),
)
def set_rate(body: FxRateIn, session: SessionDep, actor: Manager) -> FxRateOut:
    """Record the rate of a day (a second call for the same day corrects it)."""
    row = service.set_rate(
        session, actor, day=body.day, base=body.base, quote=body.quote, rate=Decimal(body.rate)
    )
    return FxRateOut.model_validate(row)


@router.get("", response_model=list[FxRateOut], responses=problem_responses(401, 422))
def list_rates(
    session: SessionDep,
    actor: Reader,
    base: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    quote: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
) -> list[FxRateOut]:
    return [
        FxRateOut.model_validate(r)
        for r in service.list_rates(session, actor.organization_id, base, quote)
    ]


# The ECB's full history is a few MB; this leaves room for decades more of it.
MAX_IMPORT_BYTES = 16 * 1024 * 1024
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})


class FileTooLarge(ReturnGuardError):
    status = 413
    code = "file_too_large"
    title = "File too large"


class NotCsv(ReturnGuardError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


async def csv_body(request: Request) -> str:
    """The raw request body as UTF-8 text, refused as soon as it passes MAX_IMPORT_BYTES."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in CSV_MEDIA_TYPES:
        raise NotCsv(
            f"send the CSV file itself as the body, with Content-Type: text/csv "
            f"(not {media_type or 'no Content-Type'})"
        )
    too_large = FileTooLarge(
        f"the file is larger than {MAX_IMPORT_BYTES} bytes; nothing was imported",
        extra={"max_bytes": MAX_IMPORT_BYTES},
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_IMPORT_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_IMPORT_BYTES:
            raise too_large
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput.field("file", f"is not UTF-8 text (byte {exc.start})") from None


class FxImportOut(OutModel):
    import_id: uuid.UUID = Field(description="The id the import's event is recorded under")
    source: str = Field(examples=["ecb"])
    base: str = Field(examples=["EUR"])
    first_day: date
    last_day: date
    days: int = Field(description="Days with at least one rate")
    currencies: list[str] = Field(examples=[["JPY", "USD"]])
    skipped_currencies: list[str] = Field(
        description="Columns of currencies no longer in use (such as CYP or BGN), not imported",
        examples=[["BGN", "CYP"]],
    )
    rates: int = Field(description="Rates in the file: created + updated + unchanged")
    created: int
    updated: int = Field(description="Days already recorded with another rate, now corrected")
    unchanged: int = Field(description="Days already recorded with the same rate")


_IMPORT_RESPONSES = problem_responses(401, 403, 409, 413, 415, 422)
_IMPORT_RESPONSES[409]["description"] = "Rates for the same days were recorded meanwhile; retry"
_IMPORT_RESPONSES[413]["description"] = f"The file is larger than {MAX_IMPORT_BYTES >> 20} MiB"
_IMPORT_RESPONSES[415]["description"] = "The body is not sent as `text/csv`"
_IMPORT_RESPONSES[422]["description"] = (
    "The file has problems; `errors` names each one's line and column (field `file`)"
)
_ECB_EXAMPLE = "Date,USD,JPY,CYP,\n2026-11-27,1.0562,160.12,N/A,\n2026-11-26,1.0550,159.98,N/A,\n"


@router.post(
    "/import",
    summary="Import ECB reference rates",
    response_model=FxImportOut,
    responses=_IMPORT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": (
                "An ECB euro reference-rate file, sent as the raw body: the history "
                "(`eurofxref-hist.csv`) or the day's file (`eurofxref.csv`), UTF-8, at most "
                f"{MAX_IMPORT_BYTES >> 20} MiB."
            ),
            "content": {
                kind: {"schema": {"type": "string"}, "example": _ECB_EXAMPLE}
                for kind in sorted(CSV_MEDIA_TYPES)
            },
        }
    },
)
def import_ecb(
    session: SessionDep, actor: Manager, text: Annotated[str, Depends(csv_body)]
) -> FxImportOut:
    """Import the ECB's euro reference rates from its CSV file: all of them, or none.

    Each cell becomes the rate EUR → its column's currency for its day, recorded with
    source `ecb`; a day already recorded is corrected. A file with any problem imports
    nothing and the 422 lists every problem (up to 50) by line and column. The answer
    is 200 with what was done, also when a repeated import changed nothing.
    """
    return FxImportOut.model_validate(service.import_ecb(session, actor, text))
