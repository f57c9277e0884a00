"""Every sentence of the policy page is accounted for: a promise, or plainly information.

The promises are checked against the engine over HTTP in tests/policies/
test_page_promises.py; here, that the page says nothing outside its statements, that a
sentence without a promise is one of the few that cannot promise anything the engine
decides, and that the seven languages make the same promises.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from returnguard.domain.policy.defaults import default_policy, default_policy_data
from returnguard.domain.policy.document import PolicyDocument
from returnguard.domain.reasons import ReasonClass
from returnguard.policies.page import (
    PolicyPage,
    Promise,
    PromiseKind,
    language_from_header,
    render_policy_page,
)
from returnguard.policies.page_messages import CATALOGUES, EN

# Sentences that promise nothing the engine decides, and why.
INFORMATIONAL = {
    "cond_required": "asks for a condition; what happens otherwise is the fee's promise",
    "cond_legal_check": "the law on loss of value from handling",
    "fault_intro": "how to report a faulty item; its window is promised next to it",
    "excl_intro": "introduces the list of excluded items",
    "start_online": "how to start a return",
    "start_steps": "how to start a return",
    "start_contact": "how to start a return",
    "refund_standard": "refund timing: the seller's operations, not a decision",
    "refund_after_legal": "refund timing: the seller's operations, not a decision",
    "refund_legal_extra": "the law on premium delivery",
    "legal_how": "how to withdraw",
    "legal_general": "EU/UK rights for a buyer whose country is unknown",
}
START_URL = "https://shop.example/returns"


def _policy(change: str, currency: str = "EUR") -> PolicyDocument:
    data: dict[str, Any] = default_policy_data(currency)
    rules = data["rules"]
    if change == "always-fee":
        next(r for r in rules if "restocking_fee" in r["then"])["then"]["restocking_fee"][
            "applies_to"
        ] = "always"
    elif change == "no-buyers-choice":
        rules.insert(
            0,
            {"id": "final", "when": {"reason_classes": ["no_fault"]}, "then": {"eligible": False}},
        )
    elif change == "no-faulty":
        rules.insert(
            0,
            {
                "id": "as-is",
                "when": {"reason_classes": ["seller_fault"]},
                "then": {"eligible": False},
            },
        )
    elif change == "generous":
        data["defaults"] |= {"refund_outbound_shipping": True, "return_shipping_paid_by": "seller"}
        data["rules"] = [
            {
                "id": "hygiene",
                "when": {
                    "categories": ["underwear"],
                    "reason_classes": ["no_fault"],
                    "days_since_delivery": {"min": 15},
                },
                "then": {"eligible": False},
            }
        ]
    elif change == "inspect-all":
        data["defaults"]["inspection_before_refund"] = True
        data["defaults"]["shipping"] = {"tracked": True}
    return PolicyDocument.model_validate(data)


POLICIES = ["default", "always-fee", "no-buyers-choice", "no-faulty", "generous", "inspect-all"]
COUNTRIES = ["DE", "GB", "US", "JP", None]


def _page(policy: str, country: str | None, language: str = "en") -> PolicyPage:
    return render_policy_page(
        _policy(policy),
        language=language,
        currency="EUR",
        buyer_country=country,
        shop_name="Nordlicht",
        start_url=START_URL,
    )


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("country", COUNTRIES)
def test_the_page_says_nothing_but_its_statements(policy: str, country: str | None) -> None:
    for language in CATALOGUES:
        page = _page(policy, country, language)
        written = "".join(
            "".join(part.text for part in item if part.href is None)
            for section in page.sections
            for block in section.blocks
            for item in block.items
        )
        assert _flat(written) == _flat("".join(s.text for s in page.statements)), language
        for statement in page.statements:
            if not statement.promises:
                assert set(statement.message_ids) <= set(INFORMATIONAL), statement
            for promise in statement.promises:
                assert promise.text == statement.text
                assert promise.reason_codes, promise


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("country", COUNTRIES)
def test_every_language_makes_the_same_promises(policy: str, country: str | None) -> None:
    english = [replace(p, text="") for p in _page(policy, country).promises]
    assert english
    for language in CATALOGUES:
        page = _page(policy, country, language)
        assert [replace(p, text="") for p in page.promises] == english, language


def test_promises_survive_json() -> None:
    page = _page("generous", "DE")
    data = page.to_json()
    assert [Promise.from_json(p) for p in data["promises"]] == list(page.promises)
    kinds = {p["kind"] for p in data["promises"]}
    assert {"excluded", "accepted", "outbound_shipping", "window"} <= kinds


def _windows(page: PolicyPage) -> dict[ReasonClass | None, int | None]:
    return {p.reason_class: p.last_day for p in page.promises if p.kind is PromiseKind.WINDOW}


def test_us_page_states_the_30_days_for_faulty_items_too() -> None:
    page = render_policy_page(
        default_policy("USD"), language="en", currency="USD", buyer_country="US", shop_name="X"
    )
    text = page.text.replace("\n", " ")
    assert "You can return items within 30\xa0days of delivery." in text
    assert EN["window_reasons_note"] in text
    assert (
        "You can report damaged, defective or wrong items up to 30\xa0days after delivery." in text
    )
    assert _windows(page) == {ReasonClass.NO_FAULT: 30, ReasonClass.SELLER_FAULT: 30}


@pytest.mark.parametrize(
    ("country", "fault_days", "sentence"),
    [
        ("DE", 730, "up to 2\xa0years after delivery"),
        ("FR", 730, "up to 2\xa0years after delivery"),
        ("GB", 30, "up to 30\xa0days after delivery"),
        ("JP", 30, "up to 30\xa0days after delivery"),
        ("US", 30, "up to 30\xa0days after delivery"),
    ],
)
def test_faulty_items_window_is_what_the_engine_gives_that_country(
    country: str, fault_days: int, sentence: str
) -> None:
    page = _page("default", country)
    assert _windows(page)[ReasonClass.SELLER_FAULT] == fault_days
    assert sentence in page.text.replace("\n", " ")


def test_a_shop_that_takes_no_faulty_items_back_says_so() -> None:
    page = _page("no-faulty", "US")
    text = page.text.replace("\n", " ")
    assert EN["fault_none"] in text
    assert EN["fault_intro"] not in text
    assert EN["costs_fault_free"] not in text and EN["fee_fault_none"] not in text
    refused = [p for p in page.promises if p.kind is PromiseKind.NO_RETURNS]
    assert [p.reason_class for p in refused] == [ReasonClass.SELLER_FAULT]
    # Where the law gives a guarantee, faulty items are taken back whatever the policy says.
    assert EN["fault_none"] not in _page("no-faulty", "DE").text.replace("\n", " ")


def test_outbound_delivery_for_faulty_items_is_stated_as_the_engine_decides() -> None:
    # The default policy refunds the delivery charge with every seller-fault return.
    default = _page("default", "US").text.replace("\n", " ")
    assert EN["outbound_fault_yes"] in default and EN["outbound_fault_no"] not in default
    generous = _page("generous", "US").text.replace("\n", " ")
    assert EN["outbound_fault_yes"] in generous
    assert EN["outbound_yes"] in generous


def test_a_flat_fee_is_promised_only_after_the_legal_withdrawal_period() -> None:
    page = _page("always-fee", "DE")
    fees = [p for p in page.promises if p.kind is PromiseKind.RESTOCKING_FEE]
    assert [(p.first_day, p.last_day) for p in fees] == [(15, 30)]
    none = [
        (p.first_day, p.last_day)
        for p in page.promises
        if p.kind is PromiseKind.NO_RESTOCKING_FEE and p.reason_class is ReasonClass.NO_FAULT
    ]
    assert none == [(0, 14)]


def test_an_excluded_category_is_refused_only_after_the_withdrawal_period_in_the_eu() -> None:
    de = [p for p in _page("generous", "DE").promises if p.categories == ("underwear",)]
    assert {(p.kind, p.first_day, p.last_day) for p in de} == {
        (PromiseKind.EXCLUDED, 15, None),
        (PromiseKind.ACCEPTED, 0, 14),
    }
    us = [p for p in _page("generous", "US").promises if p.categories == ("underwear",)]
    # The rule itself starts on day 15: the page does not promise a refusal before.
    assert [(p.kind, p.first_day) for p in us] == [(PromiseKind.EXCLUDED, 15)]


@pytest.mark.parametrize(
    ("header", "tag"),
    [
        (None, None),
        ("", None),
        ("de-DE,de;q=0.9,en;q=0.8", "de-DE"),
        ("nl-NL, fr;q=0.7, en;q=0.9", "en"),
        ("nl-NL, tlh;q=0.5, *;q=0.1", None),
        ("es;q=0, it;q=0.2", "it"),
        ("ja;q=abc, zh-CN;q=0.5", "zh-CN"),
        ("zh-TW, ko", None),
        ("EN-gb", "EN-gb"),
    ],
)
def test_accept_language_picks_the_preferred_language_the_page_is_written_in(
    header: str | None, tag: str | None
) -> None:
    assert language_from_header(header) == tag
