"""The buyer-facing return policy page, in HTML and plain text, from a policy document.

Three steps. `summarize_policy` reads the document the way the engine does and turns it
into the facts a buyer checks before buying (window, condition, who pays, fees, evidence,
exclusions, refund timing), with the legal floors of the buyer's country applied, so the
page never promises less than the law. `render_policy_page` writes those facts in the
channel's language from the message catalogue (`page_messages`), numbers and money
formatted by Babel for that language. Every sentence it writes is a `Statement`; a
sentence that tells the buyer what will happen to a return carries the `Promise` it
makes, in a structured form (reason codes, days, payer, fee, value threshold) that a test
checks against the engine, so the page cannot promise what the engine does not do.

How the document is read:

* The page speaks of returns in general: a rule that needs facts the page cannot know
  (an item's category, SKU or value, the channel, the delivery date) does not decide the
  general settings. The engine is asked with those facts missing, once per reason code.
* The return window is the last day a return is still accepted, found by asking the
  engine on every day where the answer could change (window lengths, day ranges of the
  rules, legal periods) — so rules such as "no returns after day 20", the EU/UK
  14 days and Japan's 8-day default are all taken into account. It is worked out for
  buyer's-choice returns and for damaged, defective or wrong items separately, and both
  are stated: the legal guarantee for faulty goods (EU 2 years, UK 30 days) is a window
  of its own.
* Exclusions, returnless refunds and inspection thresholds come from the rules that
  state them (`eligible: false` with a category, SKU or value condition; a value band on
  `returnless_refund` or `inspection_before_refund`). Rules about a buyer's risk, the
  watchlist or first purchases are internal and never appear on the page.
* Who pays, fees and whether the outbound delivery is refunded are what the engine
  decides, law and money-safety rules included; where a policy gives less than the law
  (say, the buyer paying to send back a faulty item in the EU) the page says what the
  engine does, and the policy is what needs changing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from functools import cache
from itertools import pairwise
from typing import Any, Literal
from urllib.parse import urlsplit

from babel import Locale, UnknownLocaleError
from babel.lists import format_list
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from returnguard.domain.policy.document import (
    BUILTIN_DEFAULTS,
    Conditions,
    FeeApplies,
    Payer,
    PolicyDocument,
    RestockingFee,
    Shipping,
    ValueBand,
)
from returnguard.domain.policy.engine import (
    LineFacts,
    ReturnFacts,
    compile_policy,
    evaluate,
)
from returnguard.domain.policy.law import FLOORS, Floor, floor_for
from returnguard.domain.reasons import REASON_CLASSES, ReasonClass, ReasonCode
from returnguard.kit.money import check_currency
from returnguard.policies.page_messages import CATALOGUES, DEFAULT_LANGUAGE

REFUND_DAYS = 14
"""Refund promised after a return is received (outside the legal withdrawal period)."""
LEGAL_REFUND_DAYS = 14
"""EU/UK: refund due this many days after the withdrawal notice (2011/83/EU art. 13)."""
LEGAL_SEND_BACK_DAYS = 14
"""EU/UK: the consumer sends the goods back within this many days of withdrawing (art. 14)."""
_GENERAL_WITHDRAWAL_DAYS = max(f.withdrawal_days or 0 for f in FLOORS) or 14

NO_FAULT_CODES: tuple[ReasonCode, ...] = tuple(
    c for c in ReasonCode if c.reason_class is ReasonClass.NO_FAULT
)
SELLER_FAULT_CODES: tuple[ReasonCode, ...] = tuple(
    c for c in ReasonCode if c.reason_class is ReasonClass.SELLER_FAULT
)
_PRIVATE_CONDITIONS = ("buyer_risk", "first_time_buyer")


# ------------------------------------------------------------------ buyer-facing facts


@dataclass(frozen=True, slots=True)
class Fee:
    percent: Decimal
    cap: Decimal | None
    opened_only: bool


@dataclass(frozen=True, slots=True)
class EvidenceAsk:
    reasons: tuple[ReasonCode, ...]
    photos: int
    video: bool
    explanation: bool


@dataclass(frozen=True, slots=True)
class Amount:
    value: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Exclusion:
    decline_reason: str | None
    categories: tuple[str, ...]
    skus: tuple[str, ...]
    value_min: Amount | None
    value_below: Amount | None
    no_fault_only: bool
    first_day: int
    """The rule's own day range (`days_since_delivery`), which the page does not state."""
    last_day: int | None


@dataclass(frozen=True, slots=True)
class PolicySummary:
    """What a buyer checks before buying, as the policy and the law decide it."""

    window_days: int | None
    """Days after delivery a return with nothing wrong with the item is accepted; None: never."""
    buyer_pays_return: bool
    fee: Fee | None
    outbound_refunded: bool
    fault_window_days: int | None
    """Days after delivery a damaged, defective or wrong item is accepted; None: never."""
    fault_buyer_pays: bool
    fault_fee: bool
    fault_outbound_refunded: bool
    evidence: tuple[EvidenceAsk, ...]
    exclusions: tuple[Exclusion, ...]
    returnless: bool
    returnless_below: Amount | None
    inspect_all: bool
    inspect_from: Amount | None
    inspect_shipping: Shipping | None
    inspect_total: Amount | None
    """The policy's high-value threshold: a return worth this much in all is inspected."""
    floor: Floor | None
    buyer_country: str | None


def summarize_policy(
    document: PolicyDocument, *, currency: str, buyer_country: str | None = None
) -> PolicySummary:
    currency = check_currency(currency)
    country = buyer_country.strip().upper() if buyer_country else None
    compiled = compile_policy(document)
    days = _candidate_days(document)
    floor = floor_for(country)

    def settings(code: ReasonCode, day: int | None) -> dict[str, Any]:
        facts = ReturnFacts(
            channel="",
            marketplace_country=None,
            buyer_country=country,
            currency=currency,
            days_since_delivery=day,
            buyer_risk=None,
            watchlisted=False,
            first_time_buyer=None,
            cost_to_return=None,
            lines=[
                LineFacts(
                    line_id="page",
                    sku="",
                    category=None,
                    reason_code=code,
                    unit_value=None,
                    quantity=1,
                )
            ],
        )
        return evaluate(compiled, facts, explain=False).lines[0].settings

    def window(code: ReasonCode) -> int | None:
        return _effective_window(days, lambda day: settings(code, day))

    no_fault = [(code, window(code), settings(code, None)) for code in NO_FAULT_CODES]
    accepted = [(code, s) for code, w, s in no_fault if w is not None]
    windows = [w for _, w, _ in no_fault if w is not None]
    fee = next(
        (
            Fee(f.percent, f.cap, f.applies_to is FeeApplies.OPENED)
            for _, s in accepted
            if isinstance(f := s.get("restocking_fee"), RestockingFee) and f.percent > 0
        ),
        None,
    )

    fault = [(code, window(code), settings(code, None)) for code in SELLER_FAULT_CODES]
    fault_accepted = [s for _, w, s in fault if w is not None]
    fault_windows = [w for _, w, _ in fault if w is not None]
    fault_window = min(fault_windows) if fault_windows else None
    groups: dict[tuple[int, bool, bool], list[ReasonCode]] = {}
    for code, _, s in fault:
        ev = s.get("evidence")
        if ev is not None and ev.required:
            groups.setdefault((ev.photos, ev.video, ev.explanation), []).append(code)

    returnless, returnless_below = _returnless(document, country, currency)
    inspect_all, inspect_from, inspect_shipping = _inspection(document, country, currency)
    threshold = document.high_value_threshold
    # Within a legal guarantee that covers the whole window for faulty items, an exclusion
    # can only ever refuse buyer's-choice returns (the engine accepts the faulty ones).
    guarantee_covers = (
        floor is not None
        and floor.guarantee_days is not None
        and (fault_window or 0) <= floor.guarantee_days
    )
    return PolicySummary(
        window_days=min(windows) if windows else None,
        buyer_pays_return=any(s.get("return_shipping_paid_by") is Payer.BUYER for _, s in accepted),
        fee=fee,
        outbound_refunded=bool(accepted)
        and all(s.get("refund_outbound_shipping") is True for _, s in accepted),
        fault_window_days=fault_window,
        fault_buyer_pays=any(
            s.get("return_shipping_paid_by") is Payer.BUYER for s in fault_accepted
        ),
        fault_fee=any(
            isinstance(f := s.get("restocking_fee"), RestockingFee) and f.percent > 0
            for s in fault_accepted
        ),
        fault_outbound_refunded=bool(fault_accepted)
        and all(s.get("refund_outbound_shipping") is True for s in fault_accepted),
        evidence=tuple(
            EvidenceAsk(tuple(codes), photos, video, explanation)
            for (photos, video, explanation), codes in groups.items()
        ),
        exclusions=_exclusions(document, country, currency, guarantee_covers),
        returnless=returnless,
        returnless_below=returnless_below,
        inspect_all=inspect_all,
        inspect_from=inspect_from,
        inspect_shipping=inspect_shipping,
        inspect_total=None
        if threshold is None
        else Amount(threshold.amount, threshold.currency or currency),
        floor=floor,
        buyer_country=country,
    )


def _candidate_days(document: PolicyDocument) -> list[int]:
    """Every day on which acceptance could change: both sides of each boundary."""
    windows = {BUILTIN_DEFAULTS.return_window_days or 0}
    boundaries: set[int] = {0}
    for settings in [document.defaults, *(rule.then for rule in document.rules)]:
        if settings.return_window_days is not None:
            windows.add(settings.return_window_days)
    for rule in document.rules:
        span = rule.when.days_since_delivery
        if span is not None:
            for bound in (span.min, span.max):
                if bound is not None:
                    boundaries |= {bound - 1, bound, bound + 1}
    for floor in FLOORS:
        for value in (floor.withdrawal_days, floor.default_window_days, floor.guarantee_days):
            if value is not None:
                windows.add(value)
    for value in windows:
        boundaries |= {value, value + 1}
    return sorted(day for day in boundaries if day >= 0)


def _effective_window(
    days: Sequence[int], settings_on: Callable[[int], dict[str, Any]]
) -> int | None:
    """The last day a return is accepted, scanning the days from delivery on."""
    last: int | None = None
    for day in days:
        s = settings_on(day)
        window = s.get("return_window_days")
        if s.get("eligible") is False or (window is not None and day > window):
            break
        last = day
    return last


def _reason_classes(when: Conditions) -> set[ReasonClass]:
    classes = set(when.reason_classes) if when.reason_classes is not None else set(ReasonClass)
    if when.reason_codes is not None:
        classes &= {REASON_CLASSES[code] for code in when.reason_codes}
    return classes


def _public(when: Conditions, country: str | None) -> bool:
    """A rule the page may speak of: not about a buyer's risk, and for this buyer's country."""
    if when.watchlisted is True or any(getattr(when, n) is not None for n in _PRIVATE_CONDITIONS):
        return False
    return not (
        country and when.buyer_countries is not None and country not in when.buyer_countries
    )


def _amount(band: ValueBand, value: Decimal | None, currency: str) -> Amount | None:
    return None if value is None else Amount(value, band.currency or currency)


def _exclusions(
    document: PolicyDocument, country: str | None, currency: str, guarantee_covers: bool
) -> tuple[Exclusion, ...]:
    found = []
    for rule in document.rules:
        when = rule.when
        if rule.then.eligible is not False or not _public(when, country):
            continue
        if when.categories is None and when.skus is None and when.item_value is None:
            continue  # a window or channel matter, not a kind of item
        classes = _reason_classes(when)
        if ReasonClass.NO_FAULT not in classes:
            continue
        band = when.item_value
        span = when.days_since_delivery
        found.append(
            Exclusion(
                decline_reason=(rule.then.decline_reason or "").strip() or None,
                categories=tuple(when.categories or ()),
                skus=tuple(when.skus or ()),
                value_min=_amount(band, band.min, currency) if band and band.min else None,
                value_below=_amount(band, band.max, currency) if band else None,
                no_fault_only=ReasonClass.SELLER_FAULT not in classes or guarantee_covers,
                first_day=span.min if span is not None and span.min is not None else 0,
                last_day=span.max if span is not None else None,
            )
        )
    return tuple(found)


def _returnless(
    document: PolicyDocument, country: str | None, currency: str
) -> tuple[bool, Amount | None]:
    if document.defaults.returnless_refund:
        return True, None
    for rule in document.rules:
        if rule.then.returnless_refund is not True or not _public(rule.when, country):
            continue
        band = rule.when.item_value
        if band is None or band.max is None:
            return True, None
        return True, _amount(band, band.max, currency)
    return False, None


def _inspection(
    document: PolicyDocument, country: str | None, currency: str
) -> tuple[bool, Amount | None, Shipping | None]:
    if document.defaults.inspection_before_refund:
        return True, None, document.defaults.shipping
    for rule in document.rules:
        band = rule.when.item_value
        if (
            rule.then.inspection_before_refund is True
            and _public(rule.when, country)
            and band is not None
            and band.min is not None
        ):
            return False, _amount(band, band.min, currency), rule.then.shipping
    return False, None, None


# ------------------------------------------------------------------------- promises


class PromiseKind(StrEnum):
    """What a sentence of the page tells the buyer will happen, as the engine must do it.

    Each kind says what holds for a return of one of the promise's `reason_codes`, made
    `first_day` to `last_day` days after delivery (no end when `last_day` is None), for an
    item the promise's `categories`, `skus` and value band describe (any item without).
    """

    WINDOW = "window"
    """Accepted (not rejected) from `first_day` to `last_day`, rejected the day after."""
    NO_RETURNS = "no_returns"
    """Rejected on every day."""
    ACCEPTED = "accepted"
    """Accepted from `first_day` to `last_day` (a legal right; nothing said of later days)."""
    EXCLUDED = "excluded"
    """Rejected from `first_day` to `last_day`."""
    RETURN_SHIPPING = "return_shipping"
    """`payer` pays for sending the item back."""
    RESTOCKING_FEE = "restocking_fee"
    """The refund may keep `fee` (only for an item back opened or used if `opened_only`)."""
    NO_RESTOCKING_FEE = "no_restocking_fee"
    """No restocking fee is kept."""
    OUTBOUND_SHIPPING = "outbound_shipping"
    """The refund includes the original delivery charge when `refunded`, else not."""
    EVIDENCE = "evidence"
    """`photos`, a `video` and an `explanation` (as set) are asked for before deciding."""
    INSPECTION = "inspection"
    """An item worth `value_from` or more (any item if None) — with `whole_return`, a
    return worth that much in all — is refunded only once it has passed inspection."""
    TRACKED_SHIPPING = "tracked_shipping"
    """An item worth `value_from` or more goes back tracked (and signed, if `signature`)."""
    RETURNLESS = "returnless"
    """An item worth less than `value_below` (any if None), and less than bringing it back
    costs, may be refunded without sending it back."""


@dataclass(frozen=True, slots=True)
class Promise:
    """One promise of the page: its kind, what it is about, and the sentence that makes it."""

    kind: PromiseKind
    reason_codes: tuple[ReasonCode, ...]
    text: str = ""
    first_day: int = 0
    last_day: int | None = None
    payer: Payer | None = None
    fee: Fee | None = None
    refunded: bool | None = None
    photos: int = 0
    video: bool = False
    explanation: bool = False
    value_from: Amount | None = None
    value_below: Amount | None = None
    categories: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    signature: bool = False
    whole_return: bool = False

    @property
    def reason_class(self) -> ReasonClass | None:
        """The one class of the reason codes, None when they span several."""
        classes = {code.reason_class for code in self.reason_codes}
        return classes.pop() if len(classes) == 1 else None

    def to_json(self) -> dict[str, Any]:
        def amount(a: Amount | None) -> dict[str, str] | None:
            return None if a is None else {"amount": str(a.value), "currency": a.currency}

        fee = self.fee
        return {
            "kind": self.kind.value,
            "reason_class": self.reason_class.value if self.reason_class else None,
            "reason_codes": [code.value for code in self.reason_codes],
            "text": self.text,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "payer": self.payer.value if self.payer else None,
            "fee": None
            if fee is None
            else {
                "percent": str(fee.percent),
                "cap": None if fee.cap is None else str(fee.cap),
                "opened_only": fee.opened_only,
            },
            "refunded": self.refunded,
            "photos": self.photos,
            "video": self.video,
            "explanation": self.explanation,
            "value_from": amount(self.value_from),
            "value_below": amount(self.value_below),
            "categories": list(self.categories),
            "skus": list(self.skus),
            "signature": self.signature,
            "whole_return": self.whole_return,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Promise:
        def amount(a: dict[str, str] | None) -> Amount | None:
            return None if a is None else Amount(Decimal(a["amount"]), a["currency"])

        fee = data["fee"]
        return cls(
            kind=PromiseKind(data["kind"]),
            reason_codes=tuple(ReasonCode(c) for c in data["reason_codes"]),
            text=data["text"],
            first_day=data["first_day"],
            last_day=data["last_day"],
            payer=Payer(data["payer"]) if data["payer"] else None,
            fee=None
            if fee is None
            else Fee(
                Decimal(fee["percent"]),
                None if fee["cap"] is None else Decimal(fee["cap"]),
                fee["opened_only"],
            ),
            refunded=data["refunded"],
            photos=data["photos"],
            video=data["video"],
            explanation=data["explanation"],
            value_from=amount(data["value_from"]),
            value_below=amount(data["value_below"]),
            categories=tuple(data["categories"]),
            skus=tuple(data["skus"]),
            signature=data["signature"],
            whole_return=data["whole_return"],
        )


@dataclass(frozen=True, slots=True)
class Statement:
    """One sentence (or two that belong together) of the page, with what it promises."""

    message_ids: tuple[str, ...]
    text: str
    promises: tuple[Promise, ...] = ()


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, slots=True)
class PolicyPage:
    html: str
    text: str
    language: str
    """The catalogue language actually used ("en" when the requested one is unknown)."""
    title: str = ""
    sections: tuple[Section, ...] = ()
    statements: tuple[Statement, ...] = ()
    """Every sentence of the page below the title and the introduction, in page order."""
    currency: str = ""
    buyer_country: str | None = None

    @property
    def promises(self) -> tuple[Promise, ...]:
        return tuple(p for s in self.statements for p in s.promises)

    def to_json(self) -> dict[str, Any]:
        """The page as data: its sections as plain text and its promises, structured."""
        return {
            "language": self.language,
            "title": self.title,
            "currency": self.currency,
            "buyer_country": self.buyer_country,
            "sections": [
                {
                    "id": section.id,
                    "heading": section.heading,
                    "blocks": [
                        {
                            "kind": block.kind,
                            "items": ["".join(part.text for part in item) for item in block.items],
                        }
                        for block in section.blocks
                    ],
                }
                for section in self.sections
            ],
            "promises": [p.to_json() for p in self.promises],
        }


# ------------------------------------------------------------------------- languages


def resolve_language(tag: str | None) -> tuple[str, Locale]:
    """Map a language tag ("de", "de-DE", "zh-CN", "zh_Hans") to a catalogue and a locale.

    The catalogue key is returned with the Babel locale used for numbers and money; the
    region of the tag is kept for formatting where Babel knows it (de-AT, fr-CH).
    Traditional Chinese (zh-Hant, zh-TW, zh-HK, zh-MO) has no catalogue and, like any
    other unknown language, falls back to English.
    """
    parts = [p for p in re.split(r"[-_]", (tag or "").strip()) if p]
    if not parts:
        return DEFAULT_LANGUAGE, Locale.parse(DEFAULT_LANGUAGE)
    primary = parts[0].lower()
    script = next((p.title() for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
    region = next(
        (p.upper() for p in parts[1:] if (len(p) == 2 and p.isalpha()) or len(p) == 3),
        None,
    )
    if primary == "zh":
        script = script or ("Hant" if region in {"TW", "HK", "MO"} else "Hans")
        if script != "Hans":
            return DEFAULT_LANGUAGE, Locale.parse(DEFAULT_LANGUAGE)
        key, base = "zh-Hans", "zh_Hans"
    elif primary in CATALOGUES:
        key, base = primary, primary
    else:
        return DEFAULT_LANGUAGE, Locale.parse(DEFAULT_LANGUAGE)
    return key, _locale(base, region)


@cache
def _locale(base: str, region: str | None) -> Locale:
    if region:
        try:
            return Locale.parse(f"{base}_{region}")
        except (UnknownLocaleError, ValueError):
            pass
    return Locale.parse(base)


def language_from_header(accept_language: str | None) -> str | None:
    """The buyer's most preferred language in an Accept-Language header that the page is
    written in; None when it names none (the caller then falls back to the channel's)."""
    choices: list[tuple[float, int, str]] = []
    for i, item in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = item.partition(";")
        tag = tag.strip()
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        if tag and tag != "*" and weight > 0:
            choices.append((-weight, i, tag))
    for _, _, tag in sorted(choices):
        key, _ = resolve_language(tag)
        if key != DEFAULT_LANGUAGE or re.split(r"[-_]", tag)[0].lower() == DEFAULT_LANGUAGE:
            return tag
    return None


class _Writer:
    """Messages of one language, with Babel's number, money and list formats."""

    def __init__(self, language: str, locale: Locale, currency: str) -> None:
        self.language = language
        self.locale = locale
        self.currency = currency
        self.messages = CATALOGUES[language]
        self.cjk = language in {"ja", "zh-Hans"}

    def __call__(self, message_id: str, **fields: object) -> str:
        return self.messages[message_id].format(**fields)

    def plural(self, base: str, n: int, **fields: object) -> str:
        form = "one" if self.locale.plural_form(n) == "one" else "other"
        return self(f"{base}_{form}", n=self.number(n), **fields)

    def number(self, n: int) -> str:
        return str(format_decimal(n, locale=self.locale))

    def money(self, amount: Amount) -> str:
        return str(format_currency(amount.value, amount.currency, locale=self.locale))

    def percent(self, percent: Decimal) -> str:
        return str(
            format_percent(
                (percent / 100).normalize(), locale=self.locale, decimal_quantization=False
            )
        )

    def period(self, days: int) -> str:
        if days >= 365 and days % 365 == 0:
            return self.plural("period_years", days // 365)
        return self.plural("period_days", days)

    def quote(self, text: str) -> str:
        return self("quote", text=text)

    def any_of(self, items: Sequence[str]) -> str:
        return str(format_list(list(items), style="or", locale=self.locale))

    def all_of(self, items: Sequence[str]) -> str:
        return str(format_list(list(items), locale=self.locale))

    def sentences(self, *parts: str | None) -> str:
        return ("" if self.cjk else " ").join(p for p in parts if p)


# -------------------------------------------------------------------------- the page


@dataclass(frozen=True, slots=True)
class Inline:
    text: str
    href: str | None = None


@dataclass(frozen=True, slots=True)
class Block:
    kind: Literal["p", "ul"]
    items: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True, slots=True)
class Section:
    id: str
    heading: str
    blocks: tuple[Block, ...]


def render_policy_page(
    document: PolicyDocument,
    *,
    language: str,
    currency: str,
    buyer_country: str | None = None,
    shop_name: str,
    start_url: str | None = None,
) -> PolicyPage:
    """The return policy page for buyers, in `language` (English when unknown).

    `currency` is the channel's: the currency of the policy's amounts. With a
    `buyer_country` in a legal floor region (EU/EEA, UK, Japan) the page states at least
    what the law gives that buyer; without one it adds a note on EU/UK rights.
    `start_url` must be an http(s) address; without it, buyers are told to contact the
    shop. Every promise the page makes is in `PolicyPage.promises`, with its sentence.
    """
    if start_url is not None:
        _check_url(start_url)
    key, locale = resolve_language(language)
    w = _Writer(key, locale, check_currency(currency))
    summary = summarize_policy(document, currency=w.currency, buyer_country=buyer_country)
    title = w("title", shop=shop_name.strip())
    intro = w("intro")
    builder = _Builder(w)
    _sections(builder, summary, start_url)
    sections = builder.sections
    html = _template().render(lang=key, title=title, intro=intro, sections=sections)
    text = _render_text(title, intro, sections)
    return PolicyPage(
        html=html,
        text=text,
        language=key,
        title=title,
        sections=tuple(sections),
        statements=tuple(builder.statements),
        currency=w.currency,
        buyer_country=summary.buyer_country,
    )


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or any(c.isspace() for c in url):
        raise ValueError(f"start_url must be an http(s) address, not {url!r}")


def _say(ids: str | tuple[str, ...], text: str, *promises: Promise) -> Statement:
    """A sentence of the page; each promise it makes gets the sentence as its text."""
    message_ids = (ids,) if isinstance(ids, str) else ids
    return Statement(message_ids, text, tuple(replace(p, text=text) for p in promises))


@dataclass(frozen=True, slots=True)
class _List:
    items: Sequence[Statement]


# A paragraph: sentences written one after the other, or a link on its own.
_Paragraph = Sequence[Statement | None] | Inline


@dataclass
class _Builder:
    w: _Writer
    sections: list[Section] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    def add(self, section_id: str, *blocks: _Paragraph | _List | None) -> None:
        kept: list[Block] = []
        for block in blocks:
            if block is None:
                continue
            if isinstance(block, Inline):
                kept.append(Block("p", ((block,),)))
            elif isinstance(block, _List):
                if block.items:
                    kept.append(Block("ul", tuple((Inline(s.text),) for s in block.items)))
                    self.statements += block.items
            else:
                said = [s for s in block if s is not None]
                if said:
                    text = self.w.sentences(*(s.text for s in said))
                    kept.append(Block("p", ((Inline(text),),)))
                    self.statements += said
        if kept:
            self.sections.append(Section(section_id, self.w(f"h_{section_id}"), tuple(kept)))


# Reason codes a buyer may pick when withdrawing without giving a reason: all but the
# faulty-goods ones, which have the legal guarantee instead.
_WITHDRAWAL_CODES: tuple[ReasonCode, ...] = tuple(
    c for c in ReasonCode if c.reason_class is not ReasonClass.SELLER_FAULT
)
_PAGE_CODES = NO_FAULT_CODES + SELLER_FAULT_CODES


def _sections(page: _Builder, s: PolicySummary, start_url: str | None) -> None:
    w = page.w
    floor = s.floor
    withdrawal = floor.withdrawal_days if floor is not None else None
    window = s.window_days
    fault_window = s.fault_window_days

    # Return window
    if window is not None:
        page.add(
            "window",
            [
                _say(
                    ("window_days", "window_reasons_note"),
                    w.sentences(
                        w("window_days", period=w.period(window)), w("window_reasons_note")
                    ),
                    Promise(PromiseKind.WINDOW, NO_FAULT_CODES, last_day=window),
                )
            ],
        )
    else:
        page.add(
            "window",
            [
                _say(
                    "window_none", w("window_none"), Promise(PromiseKind.NO_RETURNS, NO_FAULT_CODES)
                )
            ],
        )

    # The restocking fee, on the days it is kept. A flat fee the law removes on every day
    # of the window (withdrawal period at least as long) is no fee at all.
    fee = s.fee if window is not None else None
    if fee is not None and not fee.opened_only and withdrawal and window and window <= withdrawal:
        fee = None
    fee_promise: Promise | None = None
    if fee is not None and window is not None:
        first = withdrawal + 1 if withdrawal and not fee.opened_only else 0
        fee_promise = Promise(
            PromiseKind.RESTOCKING_FEE, NO_FAULT_CODES, fee=fee, first_day=first, last_day=window
        )

    # Condition
    page.add(
        "condition",
        [
            _say("cond_required", w("cond_required")),
            _say(
                "cond_opened_fee",
                w("cond_opened_fee", percent=w.percent(fee.percent)),
                fee_promise,
            )
            if fee is not None and fee.opened_only and fee_promise is not None
            else None,
        ],
        [_say("cond_legal_check", w("cond_legal_check"))] if withdrawal else None,
    )

    # Return shipping and fees
    costs: list[Statement | None] = []
    if window is not None:
        payer = Payer.BUYER if s.buyer_pays_return else Payer.SELLER
        message = "costs_buyer_pays" if s.buyer_pays_return else "costs_seller_pays"
        costs.append(
            _say(
                message,
                w(message),
                Promise(PromiseKind.RETURN_SHIPPING, NO_FAULT_CODES, payer=payer, last_day=window),
            )
        )
    if fault_window is not None:
        payer = Payer.BUYER if s.fault_buyer_pays else Payer.SELLER
        message = "costs_fault_buyer" if s.fault_buyer_pays else "costs_fault_free"
        costs.append(
            _say(
                message,
                w(message),
                Promise(
                    PromiseKind.RETURN_SHIPPING,
                    SELLER_FAULT_CODES,
                    payer=payer,
                    last_day=fault_window,
                ),
            )
        )
    fees: list[Statement | None] = []
    if fee is not None and fee_promise is not None and window is not None:
        message = "fee_opened" if fee.opened_only else "fee_always"
        fields: dict[str, object] = {"percent": w.percent(fee.percent)}
        if fee.cap is not None:
            message += "_cap"
            fields["cap"] = w.money(Amount(fee.cap, w.currency))
        fees.append(_say(message, w(message, **fields), fee_promise))
        if withdrawal and fee.opened_only:
            fees.append(
                _say(
                    "fee_legal_opened",
                    w("fee_legal_opened", days=w.number(withdrawal)),
                    Promise(
                        PromiseKind.RESTOCKING_FEE,
                        NO_FAULT_CODES,
                        fee=fee,
                        last_day=min(withdrawal, window),
                    ),
                )
            )
        elif withdrawal:
            fees.append(
                _say(
                    "fee_legal_always",
                    w("fee_legal_always", days=w.number(withdrawal)),
                    Promise(PromiseKind.NO_RESTOCKING_FEE, NO_FAULT_CODES, last_day=withdrawal),
                )
            )
    elif window is not None:
        fees.append(
            _say(
                "fee_none",
                w("fee_none"),
                Promise(PromiseKind.NO_RESTOCKING_FEE, NO_FAULT_CODES, last_day=window),
            )
        )
    if fault_window is not None and not s.fault_fee:
        fees.append(
            _say(
                "fee_fault_none",
                w("fee_fault_none"),
                Promise(PromiseKind.NO_RESTOCKING_FEE, SELLER_FAULT_CODES, last_day=fault_window),
            )
        )
    page.add("costs", costs, fees)

    # Damaged, defective or wrong items
    if fault_window is not None:
        evidence: list[Statement | None] = []
        for ask in s.evidence:
            items = []
            if ask.photos:
                items.append(w.plural("ev_photos", ask.photos))
            if ask.video:
                items.append(w("ev_video"))
            if ask.explanation:
                items.append(w("ev_explanation"))
            reasons = [w.quote(w(f"reason_{code.value}")) for code in ask.reasons]
            evidence.append(
                _say(
                    "evidence",
                    w("evidence", reasons=w.any_of(reasons), items=w.all_of(items)),
                    Promise(
                        PromiseKind.EVIDENCE,
                        ask.reasons,
                        last_day=fault_window,
                        photos=ask.photos,
                        video=ask.video,
                        explanation=ask.explanation,
                    ),
                )
            )
        page.add(
            "damaged",
            [
                _say("fault_intro", w("fault_intro")),
                _say(
                    "fault_window",
                    w("fault_window", period=w.period(fault_window)),
                    Promise(PromiseKind.WINDOW, SELLER_FAULT_CODES, last_day=fault_window),
                ),
            ],
            evidence,
        )
    else:
        page.add(
            "damaged",
            [
                _say(
                    "fault_none",
                    w("fault_none"),
                    Promise(PromiseKind.NO_RETURNS, SELLER_FAULT_CODES),
                )
            ],
        )

    # Items that cannot be returned
    if s.exclusions:
        note: list[Statement | None] = []
        if withdrawal:
            note.append(
                _say(
                    "excl_legal_note",
                    w("excl_legal_note", days=w.number(withdrawal)),
                    *(
                        _item_promise(PromiseKind.ACCEPTED, _WITHDRAWAL_CODES, e, 0, withdrawal)
                        for e in s.exclusions
                    ),
                )
            )
        page.add(
            "exclusions",
            [_say("excl_intro", w("excl_intro"))],
            _List([_exclusion_statement(w, e, floor) for e in s.exclusions]),
            note,
        )

    # How to start a return
    if start_url:
        page.add(
            "start",
            [_say("start_online", w("start_online"))],
            Inline(start_url, href=start_url),
            [_say("start_steps", w("start_steps"))],
        )
    else:
        page.add("start", [_say("start_contact", w("start_contact"))])

    # Refunds
    timing: list[Statement | None] = []
    later: list[Statement | None] = []
    if withdrawal:
        timing.append(
            _say(
                "refund_legal",
                w("refund_legal", days=w.number(LEGAL_REFUND_DAYS)),
                Promise(
                    PromiseKind.OUTBOUND_SHIPPING,
                    _WITHDRAWAL_CODES,
                    refunded=True,
                    last_day=withdrawal,
                ),
            )
        )
        timing.append(_say("refund_legal_extra", w("refund_legal_extra")))
        if window is not None and window > withdrawal:
            later.append(
                _say("refund_after_legal", w("refund_after_legal", days=w.number(REFUND_DAYS)))
            )
            message = "outbound_yes" if s.outbound_refunded else "outbound_no_after_legal"
            later.append(
                _say(
                    message,
                    w(message),
                    Promise(
                        PromiseKind.OUTBOUND_SHIPPING,
                        NO_FAULT_CODES,
                        refunded=s.outbound_refunded,
                        first_day=withdrawal + 1,
                        last_day=window,
                    ),
                )
            )
    else:
        timing.append(_say("refund_standard", w("refund_standard", days=w.number(REFUND_DAYS))))
        if window is not None:
            message = "outbound_yes" if s.outbound_refunded else "outbound_no"
            timing.append(
                _say(
                    message,
                    w(message),
                    Promise(
                        PromiseKind.OUTBOUND_SHIPPING,
                        NO_FAULT_CODES,
                        refunded=s.outbound_refunded,
                        last_day=window,
                    ),
                )
            )
    fault_outbound: list[Statement | None] = []
    if fault_window is not None:
        message = "outbound_fault_yes" if s.fault_outbound_refunded else "outbound_fault_no"
        fault_outbound.append(
            _say(
                message,
                w(message),
                Promise(
                    PromiseKind.OUTBOUND_SHIPPING,
                    SELLER_FAULT_CODES,
                    refunded=s.fault_outbound_refunded,
                    last_day=fault_window,
                ),
            )
        )
    checks: list[Statement | None] = []
    inspected = s.inspect_all or s.inspect_from is not None
    if s.inspect_all:
        checks.append(
            _say("inspect_all", w("inspect_all"), Promise(PromiseKind.INSPECTION, _PAGE_CODES))
        )
    elif s.inspect_from is not None:
        checks.append(
            _say(
                "inspect_min",
                w("inspect_min", amount=w.money(s.inspect_from)),
                Promise(PromiseKind.INSPECTION, _PAGE_CODES, value_from=s.inspect_from),
            )
        )
    ship = s.inspect_shipping
    if inspected and ship is not None and (ship.signature or ship.tracked):
        message = "ship_signature" if ship.signature else "ship_tracked"
        checks.append(
            _say(
                message,
                w(message),
                Promise(
                    PromiseKind.TRACKED_SHIPPING,
                    _PAGE_CODES,
                    value_from=s.inspect_from,
                    signature=ship.signature,
                ),
            )
        )
    if s.inspect_total is not None and not s.inspect_all:
        checks.append(
            _say(
                "inspect_total",
                w("inspect_total", amount=w.money(s.inspect_total)),
                Promise(
                    PromiseKind.INSPECTION,
                    _PAGE_CODES,
                    value_from=s.inspect_total,
                    whole_return=True,
                ),
            )
        )
    if s.returnless_below is not None:
        checks.append(
            _say(
                "returnless_below",
                w("returnless_below", amount=w.money(s.returnless_below)),
                Promise(PromiseKind.RETURNLESS, _PAGE_CODES, value_below=s.returnless_below),
            )
        )
    elif s.returnless:
        checks.append(
            _say(
                "returnless_any", w("returnless_any"), Promise(PromiseKind.RETURNLESS, _PAGE_CODES)
            )
        )
    page.add("refund", timing, later, fault_outbound, checks)

    # Statutory rights
    if floor is not None and withdrawal:
        guarantee: Statement | None = None
        days = floor.guarantee_days
        if floor.region == "UK" and days:
            guarantee = _say(
                "legal_guarantee_uk",
                w("legal_guarantee_uk", days=w.number(days)),
                Promise(PromiseKind.ACCEPTED, SELLER_FAULT_CODES, last_day=days),
                Promise(PromiseKind.NO_RESTOCKING_FEE, SELLER_FAULT_CODES, last_day=days),
            )
        elif days and days >= 365:
            guarantee = _say(
                "legal_guarantee_eu",
                w("legal_guarantee_eu", years=w.number(days // 365)),
                Promise(PromiseKind.ACCEPTED, SELLER_FAULT_CODES, last_day=days),
            )
        page.add(
            "legal",
            [
                _say(
                    "legal_withdrawal",
                    w("legal_withdrawal", days=w.number(withdrawal)),
                    Promise(PromiseKind.ACCEPTED, _WITHDRAWAL_CODES, last_day=withdrawal),
                )
            ],
            [_say("legal_how", w("legal_how", days=w.number(LEGAL_SEND_BACK_DAYS)))],
            [guarantee],
        )
    elif s.buyer_country is None:
        page.add(
            "legal",
            [_say("legal_general", w("legal_general", days=w.number(_GENERAL_WITHDRAWAL_DAYS)))],
        )


def _item_promise(
    kind: PromiseKind, codes: tuple[ReasonCode, ...], e: Exclusion, first: int, last: int | None
) -> Promise:
    return Promise(
        kind,
        codes,
        first_day=first,
        last_day=last,
        categories=e.categories,
        skus=e.skus,
        value_from=e.value_min,
        value_below=e.value_below,
    )


def _exclusion_statement(w: _Writer, e: Exclusion, floor: Floor | None) -> Statement:
    """An excluded kind of item, refused on the days no law makes the engine accept it."""
    withdrawal = floor.withdrawal_days if floor is not None else None
    guarantee = floor.guarantee_days if floor is not None else None
    promises = [
        _item_promise(
            PromiseKind.EXCLUDED,
            NO_FAULT_CODES,
            e,
            max(e.first_day, withdrawal + 1 if withdrawal else 0),
            e.last_day,
        )
    ]
    if not e.no_fault_only:
        promises.append(
            _item_promise(
                PromiseKind.EXCLUDED,
                SELLER_FAULT_CODES,
                e,
                max(e.first_day, guarantee + 1 if guarantee else 0),
                e.last_day,
            )
        )
    ids, text = _exclusion(w, e)
    return _say(ids, text, *promises)


def _exclusion(w: _Writer, e: Exclusion) -> tuple[tuple[str, ...], str]:
    ids: list[str] = []
    value = None
    if e.value_min is not None and e.value_below is not None:
        value = w("value_between", min=w.money(e.value_min), max=w.money(e.value_below))
        ids.append("value_between")
    elif e.value_below is not None:
        value = w("value_below", amount=w.money(e.value_below))
        ids.append("value_below")
    elif e.value_min is not None:
        value = w("value_from", amount=w.money(e.value_min))
        ids.append("value_from")
    if e.decline_reason:
        item = e.decline_reason
        ids = ["decline_reason"]
    else:
        what = None
        if e.categories:
            names = [w.quote(_humanize(c)) for c in e.categories]
            what = w.plural("excl_categories", len(names), categories=w.all_of(names))
            ids.append("excl_categories")
        elif e.skus:
            what = w("excl_skus")
            ids.append("excl_skus")
        if what is not None and value is not None:
            item = w("excl_with_value", what=what, value=value)
            ids.append("excl_with_value")
        elif what is not None:
            item = what
        elif value is not None:
            item = w("excl_value", value=value)
            ids.append("excl_value")
        else:
            item = w("excl_skus")
            ids.append("excl_skus")
    if e.no_fault_only:
        return (*ids, "excl_no_fault_only"), w("excl_no_fault_only", item=item)
    return tuple(ids), item


def _humanize(code: str) -> str:
    return re.sub(r"[_\s]+", " ", code).strip()


# ---------------------------------------------------------------------------- output


@cache
def _template() -> Template:
    env = Environment(
        loader=PackageLoader("returnguard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("policy_page.html.j2")


TEXT_WIDTH = 78

# Characters a line may not start with, or end with (Japanese/Chinese line breaking).
_NO_LINE_START = frozenset(
    "、。，．,.:;：；!?！？)）]］}｝」』】〉》”’%％…‥ー々〻ぁぃぅぇぉっゃゅょゎゕゖ"  # noqa: RUF001
    "ァィゥェォッャュョヮヵヶ・"
)
_NO_LINE_END = frozenset("(（[［{｛「『【〈《“‘￥¥$€£")  # noqa: RUF001


def _cells(text: str) -> int:
    """Width on a terminal: East Asian wide and full-width characters take two cells."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in "WF"


def _tokens(text: str) -> list[tuple[str, bool]]:
    """Unbreakable pieces, each with whether a space stood before it.

    Lines break at spaces, and between two wide (CJK) characters unless that would put
    closing punctuation at the start of a line or opening punctuation at the end.
    No-break spaces (in "25,00 €", "« x »") never break.
    """
    tokens: list[tuple[str, bool]] = []
    for word in text.split(" "):
        if not word:
            continue
        piece = word[0]
        first = True
        for prev, char in pairwise(word):
            if (
                _wide(prev)
                and _wide(char)
                and char not in _NO_LINE_START
                and prev not in _NO_LINE_END
            ):
                tokens.append((piece, first))
                piece, first = char, False
            else:
                piece += char
        tokens.append((piece, first))
    return tokens


def wrap(text: str, width: int = TEXT_WIDTH, first: str = "", rest: str = "") -> list[str]:
    lines: list[str] = []
    line, used, empty = first, _cells(first), True
    for token, spaced in _tokens(text):
        gap = " " if spaced and not empty else ""
        size = _cells(token)
        if not empty and used + len(gap) + size > width:
            lines.append(line)
            line, used = rest + token, _cells(rest) + size
        else:
            line, used = line + gap + token, used + len(gap) + size
        empty = False
    lines.append(line)
    return [ln.rstrip() for ln in lines]


def _render_text(title: str, intro: str, sections: Sequence[Section]) -> str:
    out = [title, "=" * _cells(title), "", *wrap(intro), ""]
    for section in sections:
        out += [section.heading, "-" * _cells(section.heading), ""]
        for block in section.blocks:
            for item in block.items:
                content = "".join(part.text for part in item)
                if block.kind == "ul":
                    out += wrap(content, first="  - ", rest="    ")
                else:
                    out += wrap(content)
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
