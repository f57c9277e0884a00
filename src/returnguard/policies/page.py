"""The buyer-facing return policy page, in HTML and plain text, from a policy document.

Two steps. `summarize_policy` reads the document the way the engine does and turns it
into the facts a buyer checks before buying (window, condition, who pays, fees, evidence,
exclusions, refund timing), with the legal floors of the buyer's country applied, so the
page never promises less than the law. `render_policy_page` writes those facts in the
channel's language from the message catalogue (`page_messages`), numbers and money
formatted by Babel for that language.

How the document is read:

* The page speaks of returns in general: a rule that needs facts the page cannot know
  (an item's category, SKU or value, the channel, the delivery date) does not decide the
  general settings. The engine is asked with those facts missing, once per reason code.
* The return window is the last day a return is still accepted, found by asking the
  engine on every day where the answer could change (window lengths, day ranges of the
  rules, legal periods) — so rules such as "no returns after day 20", the EU/UK
  14 days and Japan's 8-day default are all taken into account.
* Exclusions, returnless refunds and inspection thresholds come from the rules that
  state them (`eligible: false` with a category, SKU or value condition; a value band on
  `returnless_refund` or `inspection_before_refund`). Rules about a buyer's risk, the
  watchlist or first purchases are internal and never appear on the page.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
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


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, slots=True)
class PolicyPage:
    html: str
    text: str
    language: str
    """The catalogue language actually used ("en" when the requested one is unknown)."""


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
    skus: bool
    value_min: Amount | None
    value_below: Amount | None
    no_fault_only: bool


@dataclass(frozen=True, slots=True)
class PolicySummary:
    """What a buyer checks before buying, as the policy and the law decide it."""

    window_days: int | None
    """Days after delivery a return with nothing wrong with the item is accepted; None: never."""
    buyer_pays_return: bool
    fee: Fee | None
    outbound_refunded: bool
    fault_window_days: int | None
    fault_buyer_pays: bool
    fault_fee: bool
    evidence: tuple[EvidenceAsk, ...]
    exclusions: tuple[Exclusion, ...]
    returnless: bool
    returnless_below: Amount | None
    inspect_all: bool
    inspect_from: Amount | None
    inspect_shipping: Shipping | None
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
    fault_windows = [w for _, w, _ in fault if w is not None]
    guarantee = floor is not None and floor.guarantee_days is not None
    groups: dict[tuple[int, bool, bool], list[ReasonCode]] = {}
    for code, _, s in fault:
        ev = s.get("evidence")
        if ev is not None and ev.required:
            groups.setdefault((ev.photos, ev.video, ev.explanation), []).append(code)

    returnless, returnless_below = _returnless(document, country, currency)
    inspect_all, inspect_from, inspect_shipping = _inspection(document, country, currency)
    return PolicySummary(
        window_days=min(windows) if windows else None,
        buyer_pays_return=any(s.get("return_shipping_paid_by") is Payer.BUYER for _, s in accepted),
        fee=fee,
        outbound_refunded=bool(accepted)
        and all(s.get("refund_outbound_shipping") is True for _, s in accepted),
        fault_window_days=min(fault_windows) if fault_windows else None,
        # Under a legal guarantee, a remedy for faulty goods is free of charge.
        fault_buyer_pays=not guarantee
        and any(s.get("return_shipping_paid_by") is Payer.BUYER for _, _, s in fault),
        fault_fee=not guarantee
        and any(
            isinstance(f := s.get("restocking_fee"), RestockingFee) and f.percent > 0
            for _, _, s in fault
        ),
        evidence=tuple(
            EvidenceAsk(tuple(codes), photos, video, explanation)
            for (photos, video, explanation), codes in groups.items()
        ),
        exclusions=_exclusions(document, country, currency),
        returnless=returnless,
        returnless_below=returnless_below,
        inspect_all=inspect_all,
        inspect_from=inspect_from,
        inspect_shipping=inspect_shipping,
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
    document: PolicyDocument, country: str | None, currency: str
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
        found.append(
            Exclusion(
                decline_reason=(rule.then.decline_reason or "").strip() or None,
                categories=tuple(when.categories or ()),
                skus=when.skus is not None,
                value_min=_amount(band, band.min, currency) if band and band.min else None,
                value_below=_amount(band, band.max, currency) if band else None,
                no_fault_only=ReasonClass.SELLER_FAULT not in classes,
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


def _p(*parts: str | Inline) -> Block:
    return Block("p", (tuple(p if isinstance(p, Inline) else Inline(p) for p in parts),))


def _ul(items: Iterable[str]) -> Block:
    return Block("ul", tuple((Inline(item),) for item in items))


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
    shop.
    """
    if start_url is not None:
        _check_url(start_url)
    key, locale = resolve_language(language)
    w = _Writer(key, locale, check_currency(currency))
    summary = summarize_policy(document, currency=w.currency, buyer_country=buyer_country)
    title = w("title", shop=shop_name.strip())
    intro = w("intro")
    sections = _sections(w, summary, start_url)
    html = _template().render(lang=key, title=title, intro=intro, sections=sections)
    text = _render_text(title, intro, sections)
    return PolicyPage(html=html, text=text, language=key)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or any(c.isspace() for c in url):
        raise ValueError(f"start_url must be an http(s) address, not {url!r}")


def _sections(w: _Writer, s: PolicySummary, start_url: str | None) -> list[Section]:
    floor = s.floor
    withdrawal = floor.withdrawal_days if floor is not None else None
    sections: list[Section] = []

    def add(section_id: str, *blocks: Block | None) -> None:
        kept = tuple(b for b in blocks if b is not None)
        if kept:
            sections.append(Section(section_id, w(f"h_{section_id}"), kept))

    # Return window
    if s.window_days is not None:
        add(
            "window",
            _p(
                w.sentences(
                    w("window_days", period=w.period(s.window_days)), w("window_reasons_note")
                )
            ),
        )
    else:
        add("window", _p(w("window_none")))

    # Condition
    opened_fee = s.fee is not None and s.fee.opened_only and s.window_days is not None
    add(
        "condition",
        _p(
            w.sentences(
                w("cond_required"),
                w("cond_opened_fee", percent=w.percent(s.fee.percent))
                if opened_fee and s.fee
                else None,
            )
        ),
        _p(w("cond_legal_check")) if withdrawal else None,
    )

    # Return shipping and fees
    costs: list[str | None] = []
    if s.window_days is not None:
        costs.append(w("costs_buyer_pays" if s.buyer_pays_return else "costs_seller_pays"))
    costs.append(w("costs_fault_buyer" if s.fault_buyer_pays else "costs_fault_free"))
    fee_text: list[str | None] = []
    if s.fee is not None and s.window_days is not None:
        kind = "fee_opened" if s.fee.opened_only else "fee_always"
        fields: dict[str, object] = {"percent": w.percent(s.fee.percent)}
        if s.fee.cap is not None:
            kind += "_cap"
            fields["cap"] = w.money(Amount(s.fee.cap, w.currency))
        fee_text.append(w(kind, **fields))
        if withdrawal:
            legal = "fee_legal_opened" if s.fee.opened_only else "fee_legal_always"
            fee_text.append(w(legal, days=w.number(withdrawal)))
    elif s.window_days is not None:
        fee_text.append(w("fee_none"))
    if not s.fault_fee:
        fee_text.append(w("fee_fault_none"))
    add("costs", _p(w.sentences(*costs)), _p(w.sentences(*fee_text)))

    # Damaged, defective or wrong items
    evidence = []
    for ask in s.evidence:
        items = []
        if ask.photos:
            items.append(w.plural("ev_photos", ask.photos))
        if ask.video:
            items.append(w("ev_video"))
        if ask.explanation:
            items.append(w("ev_explanation"))
        reasons = [w.quote(w(f"reason_{code.value}")) for code in ask.reasons]
        evidence.append(w("evidence", reasons=w.any_of(reasons), items=w.all_of(items)))
    fault_window = None
    if s.fault_window_days is not None and s.fault_window_days != s.window_days:
        fault_window = w("fault_window", period=w.period(s.fault_window_days))
    add(
        "damaged",
        _p(w.sentences(w("fault_intro"), fault_window)),
        _p(w.sentences(*evidence)) if evidence else None,
    )

    # Items that cannot be returned
    if s.exclusions:
        add(
            "exclusions",
            _p(w("excl_intro")),
            _ul(_exclusion(w, e) for e in s.exclusions),
            _p(w("excl_legal_note", days=w.number(withdrawal))) if withdrawal else None,
        )

    # How to start a return
    if start_url:
        add(
            "start",
            _p(w("start_online")),
            _p(Inline(start_url, href=start_url)),
            _p(w("start_steps")),
        )
    else:
        add("start", _p(w("start_contact")))

    # Refunds
    timing: list[str | None] = []
    later: list[str | None] = []
    if withdrawal:
        timing.append(w("refund_legal", days=w.number(LEGAL_REFUND_DAYS)))
        timing.append(w("refund_legal_extra"))
        if s.window_days is not None and s.window_days > withdrawal:
            later.append(w("refund_after_legal", days=w.number(REFUND_DAYS)))
            later.append(w("outbound_yes" if s.outbound_refunded else "outbound_no_after_legal"))
    else:
        timing.append(w("refund_standard", days=w.number(REFUND_DAYS)))
        if s.window_days is not None:
            timing.append(w("outbound_yes" if s.outbound_refunded else "outbound_no"))
    checks: list[str | None] = []
    if s.inspect_all:
        checks.append(w("inspect_all"))
    elif s.inspect_from is not None:
        checks.append(w("inspect_min", amount=w.money(s.inspect_from)))
    ship = s.inspect_shipping
    if (s.inspect_all or s.inspect_from is not None) and ship is not None:
        if ship.signature:
            checks.append(w("ship_signature"))
        elif ship.tracked:
            checks.append(w("ship_tracked"))
    if s.returnless_below is not None:
        checks.append(w("returnless_below", amount=w.money(s.returnless_below)))
    elif s.returnless:
        checks.append(w("returnless_any"))
    add(
        "refund",
        _p(w.sentences(*timing)),
        _p(w.sentences(*later)) if later else None,
        _p(w.sentences(*checks)) if checks else None,
    )

    # Statutory rights
    if floor is not None and withdrawal:
        guarantee = None
        if floor.region == "UK" and floor.guarantee_days:
            guarantee = w("legal_guarantee_uk", days=w.number(floor.guarantee_days))
        elif floor.guarantee_days and floor.guarantee_days >= 365:
            guarantee = w("legal_guarantee_eu", years=w.number(floor.guarantee_days // 365))
        add(
            "legal",
            _p(w("legal_withdrawal", days=w.number(withdrawal))),
            _p(w("legal_how", days=w.number(LEGAL_SEND_BACK_DAYS))),
            _p(guarantee) if guarantee else None,
        )
    elif s.buyer_country is None:
        add("legal", _p(w("legal_general", days=w.number(_GENERAL_WITHDRAWAL_DAYS))))
    return sections


def _exclusion(w: _Writer, e: Exclusion) -> str:
    value = None
    if e.value_min is not None and e.value_below is not None:
        value = w("value_between", min=w.money(e.value_min), max=w.money(e.value_below))
    elif e.value_below is not None:
        value = w("value_below", amount=w.money(e.value_below))
    elif e.value_min is not None:
        value = w("value_from", amount=w.money(e.value_min))
    if e.decline_reason:
        item = e.decline_reason
    else:
        what = None
        if e.categories:
            names = [w.quote(_humanize(c)) for c in e.categories]
            what = w.plural("excl_categories", len(names), categories=w.all_of(names))
        elif e.skus:
            what = w("excl_skus")
        if what is not None and value is not None:
            item = w("excl_with_value", what=what, value=value)
        elif what is not None:
            item = what
        elif value is not None:
            item = w("excl_value", value=value)
        else:
            item = w("excl_skus")
    return w("excl_no_fault_only", item=item) if e.no_fault_only else item


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
