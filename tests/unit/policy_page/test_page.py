# ruff: noqa: RUF001
"""The buyer-facing return policy page: content, languages, law, escaping, layout."""

from __future__ import annotations

import re
import string
import unicodedata
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from babel.numbers import format_currency, format_percent
from markupsafe import escape

from returnguard.domain.policy.defaults import default_policy, default_policy_data
from returnguard.domain.policy.document import PolicyDocument
from returnguard.policies.page import (
    PolicyPage,
    render_policy_page,
    resolve_language,
    summarize_policy,
)
from returnguard.policies.page_messages import CATALOGUES, EN

# (catalogue key, Babel locale of that key, a tag a channel might send)
LANGUAGES = [
    ("en", "en", "en-US"),
    ("de", "de", "de-DE"),
    ("fr", "fr", "fr-FR"),
    ("es", "es", "es-ES"),
    ("it", "it", "it-IT"),
    ("ja", "ja", "ja-JP"),
    ("zh-Hans", "zh_Hans", "zh-CN"),
]
ALWAYS_THERE = ["h_window", "h_condition", "h_costs", "h_damaged", "h_start", "h_refund"]
START_URL = "https://shop.example/returns?order=1&lang=de"


def _page(document: PolicyDocument, language: str = "en", **kwargs: Any) -> PolicyPage:
    options: dict[str, Any] = {"currency": "EUR", "shop_name": "Nordlicht", **kwargs}
    return render_policy_page(document, language=language, **options)


def _flat(text: str) -> str:
    """Text without any whitespace: wrapped lines compare with unwrapped sentences."""
    return re.sub(r"\s+", "", text)


def _period(key: str, days: int) -> str:
    form = "one" if days == 1 and key not in {"ja", "zh-Hans"} else "other"
    return CATALOGUES[key][f"period_days_{form}"].format(n=days)


def _cells(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


class _Structure(HTMLParser):
    """Checks that every element is closed, in order; collects the text and the lang."""

    VOID = frozenset({"meta", "link", "br", "img", "hr", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.lang: str | None = None
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang")
        if tag in {"link", "script", "img", "iframe"} or "src" in values:
            self.external.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack}")
        else:
            self.stack.pop()


def _structure(html: str) -> _Structure:
    parser = _Structure()
    parser.feed(html)
    parser.close()
    return parser


# ------------------------------------------------------------------------- catalogue


def test_every_message_exists_in_every_language_with_the_same_fields() -> None:
    def fields(message: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(message) if name}

    assert set(CATALOGUES) == {key for key, _, _ in LANGUAGES}
    for key, messages in CATALOGUES.items():
        assert set(messages) == set(EN), key
        for message_id, message in messages.items():
            assert message.strip(), (key, message_id)
            assert fields(message) == fields(EN[message_id]), (key, message_id)


# --------------------------------------------------------------- the default policy


@pytest.mark.parametrize(("key", "locale", "tag"), LANGUAGES)
def test_default_policy_in_every_language(key: str, locale: str, tag: str) -> None:
    page = _page(default_policy("EUR"), tag, start_url=START_URL)
    messages = CATALOGUES[key]
    assert page.language == key

    window = messages["window_days"].format(period=_period(key, 30))
    percent = format_percent(Decimal("0.1"), locale=locale)
    cap = format_currency(Decimal(25), "EUR", locale=locale)
    fee = messages["fee_opened_cap"].format(percent=percent, cap=cap)
    for sentence in (window, fee):
        assert str(escape(sentence)) in page.html
        assert _flat(sentence) in _flat(page.text)
    for value in (cap, percent, "30"):
        assert value in page.html
        assert _flat(value) in _flat(page.text)

    for heading_id in [*ALWAYS_THERE, "h_legal"]:
        heading = messages[heading_id]
        assert f">{escape(heading)}</h2>" in page.html
        assert f"\n{heading}\n{'-' * _cells(heading)}\n" in page.text
    assert messages["h_exclusions"] not in page.text  # the default policy excludes nothing

    structure = _structure(page.html)
    assert structure.errors == [] and structure.stack == []
    assert structure.lang == key
    assert structure.tags.count("h1") == 1
    assert structure.external == []
    assert page.html.startswith("<!DOCTYPE html>")
    assert f'href="{escape(START_URL)}"' in page.html


def test_german_amounts_use_german_number_format() -> None:
    page = _page(default_policy("EUR"), "de")
    assert "25,00\xa0€" in page.text and "25,00\xa0€" in page.html
    assert "150,00\xa0€" in page.text  # inspection threshold
    assert "15,00\xa0€" in page.text  # returnless refund threshold
    assert "10\xa0%" in page.text
    assert "€25.00" not in page.text


@pytest.mark.parametrize(("key", "locale", "tag"), LANGUAGES)
def test_plain_text_is_wrapped_and_underlined(key: str, locale: str, tag: str) -> None:
    page = _page(default_policy("EUR"), tag, buyer_country="DE", start_url=START_URL)
    lines = page.text.splitlines()
    assert all(_cells(line) <= 78 for line in lines if START_URL not in line), key
    title = CATALOGUES[key]["title"].format(shop="Nordlicht")
    assert lines[0] == title and lines[1] == "=" * _cells(title)
    assert "<" not in page.text  # no markup in the plain text


# ------------------------------------------------------------------------ the law


def _seven_day_policy() -> PolicyDocument:
    data = default_policy_data("USD")
    data["defaults"]["return_window_days"] = 7
    return PolicyDocument.model_validate(data)


def test_seven_days_for_us_buyers_but_the_legal_fourteen_for_german_ones() -> None:
    policy = _seven_day_policy()
    us = _page(policy, currency="USD", buyer_country="US")
    de = _page(policy, currency="USD", buyer_country="DE")
    de_in_german = _page(policy, "de", currency="USD", buyer_country="DE")

    assert "You can return items within 7\xa0days of delivery." in us.text.replace("\n", " ")
    assert "within 7\xa0days of delivery" in us.html
    assert "within 14\xa0days of delivery" in de.html
    assert "7\xa0days" not in de.html
    assert "Die Rückgabefrist beträgt 14\xa0Tage ab Lieferung." in de_in_german.html
    assert summarize_policy(policy, currency="USD", buyer_country="US").window_days == 7
    assert summarize_policy(policy, currency="USD", buyer_country="DE").window_days == 14


def test_a_rule_for_us_and_german_buyers_cannot_go_below_the_floor_either() -> None:
    data = default_policy_data("EUR")
    data["rules"].insert(
        0,
        {
            "id": "short",
            "when": {"buyer_countries": ["US", "DE"]},
            "then": {"return_window_days": 7},
        },
    )
    policy = PolicyDocument.model_validate(data)
    assert summarize_policy(policy, currency="EUR", buyer_country="US").window_days == 7
    assert summarize_policy(policy, currency="EUR", buyer_country="DE").window_days == 14
    assert summarize_policy(policy, currency="EUR", buyer_country="GB").window_days == 30


def test_eu_buyers_see_withdrawal_refund_and_guarantee_facts() -> None:
    page = _page(default_policy("EUR"), buyer_country="FR")
    text = page.text.replace("\n", " ")
    assert EN["h_legal"] in text
    assert EN["legal_withdrawal"].format(days=14) in text
    assert EN["refund_legal"].format(days=14) in text
    assert "including the standard delivery costs" in text
    assert "received the goods back or you have supplied proof of having sent them" in text
    assert EN["legal_guarantee_eu"].format(years=2) in text
    assert EN["fee_legal_opened"].format(days=14) in text
    assert EN["cond_legal_check"] in text
    # Faulty goods can come back for the 2 years of the legal guarantee.
    assert "up to 2\xa0years after delivery" in text


def test_uk_buyers_get_the_short_term_right_to_reject() -> None:
    text = _page(default_policy("GBP"), currency="GBP", buyer_country="GB").text
    assert EN["legal_guarantee_uk"].format(days=30) in text.replace("\n", " ")


def test_us_buyers_get_the_policy_without_eu_law() -> None:
    text = _page(default_policy("USD"), currency="USD", buyer_country="US").text
    flat = text.replace("\n", " ")
    assert EN["h_legal"] not in text
    assert EN["refund_standard"].format(days=14) in flat
    assert EN["outbound_no"] in flat


def test_without_a_buyer_country_the_page_mentions_eu_and_uk_rights() -> None:
    text = _page(_seven_day_policy(), currency="USD").text.replace("\n", " ")
    assert "within 7\xa0days of delivery" in text
    assert EN["legal_general"].format(days=14) in text


def test_japan_default_window_applies_when_the_policy_states_none() -> None:
    data = default_policy_data("JPY")
    del data["defaults"]["return_window_days"]
    policy = PolicyDocument.model_validate(data)
    page = _page(policy, "ja", currency="JPY", buyer_country="JP")
    assert "商品到着から8日以内であれば返品できます。" in page.html
    assert summarize_policy(policy, currency="JPY", buyer_country="US").window_days == 30


def test_flat_fee_is_not_charged_on_a_legal_withdrawal() -> None:
    data = default_policy_data("EUR")
    rule = next(r for r in data["rules"] if "restocking_fee" in r["then"])
    rule["then"]["restocking_fee"]["applies_to"] = "always"
    policy = PolicyDocument.model_validate(data)
    text = _page(policy, buyer_country="IT").text.replace("\n", " ")
    assert EN["fee_legal_always"].format(days=14) in text
    assert EN["fee_always_cap"].format(percent="10%", cap="€25.00") in text
    assert EN["cond_opened_fee"].split("{")[0] not in text


def test_a_rule_ending_returns_early_shortens_the_window() -> None:
    data = default_policy_data("EUR")
    data["rules"].insert(
        0,
        {
            "id": "late",
            "when": {"days_since_delivery": {"min": 21}, "reason_classes": ["no_fault"]},
            "then": {"eligible": False},
        },
    )
    policy = PolicyDocument.model_validate(data)
    assert summarize_policy(policy, currency="EUR", buyer_country="US").window_days == 20
    assert summarize_policy(policy, currency="EUR", buyer_country="AT").window_days == 20
    assert "within 20\xa0days of delivery" in _page(policy, buyer_country="US").html


def test_no_returns_for_buyers_choice_outside_the_eu() -> None:
    data = default_policy_data("USD")
    data["rules"].insert(
        0, {"id": "final", "when": {"reason_classes": ["no_fault"]}, "then": {"eligible": False}}
    )
    policy = PolicyDocument.model_validate(data)
    us = _page(policy, currency="USD", buyer_country="US").text.replace("\n", " ")
    assert EN["window_none"] in us
    assert EN["costs_fault_free"] in us
    de = _page(policy, currency="USD", buyer_country="DE").text.replace("\n", " ")
    assert "within 14\xa0days of delivery" in de


# ------------------------------------------------------------ exclusions, escaping


def _with_exclusions() -> PolicyDocument:
    data = default_policy_data("EUR")
    data["rules"] += [
        {
            "id": "hygiene",
            "when": {"categories": ["underwear"], "reason_classes": ["no_fault"]},
            "then": {"eligible": False},
        },
        {
            "id": "final-sale",
            "when": {"skus": ["SALE-1"]},
            "then": {
                "eligible": False,
                "decline_reason": "Final sale <script>alert('x')</script> & clearance",
            },
        },
        {
            "id": "risky",
            "when": {"buyer_risk": ["high"], "categories": ["phones"]},
            "then": {"eligible": False, "decline_reason": "High-risk buyers"},
        },
    ]
    return PolicyDocument.model_validate(data)


def test_decline_reasons_are_escaped_in_html_and_kept_in_text() -> None:
    page = _page(_with_exclusions(), buyer_country="US")
    assert "<script>" not in page.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; clearance" in page.html
    assert "Final sale <script>alert('x')</script> & clearance" in page.text
    assert _structure(page.html).errors == []


def test_exclusions_describe_categories_and_hide_internal_rules() -> None:
    page = _page(_with_exclusions(), buyer_country="US")
    text = page.text.replace("\n", " ")
    assert EN["h_exclusions"] in page.text
    assert (
        "  - Items in the category “underwear” (only if nothing is wrong with the item)"
        in page.text
    )
    assert "High-risk" not in text
    assert EN["excl_legal_note"].format(days=14) not in text
    eu = _page(_with_exclusions(), "de", buyer_country="DE").text.replace("\n", " ")
    assert "Artikel der Kategorie „underwear“" in eu
    assert CATALOGUES["de"]["excl_legal_note"].format(days=14) in eu


def test_value_band_exclusion() -> None:
    data = default_policy_data("EUR")
    data["rules"].append(
        {"id": "tiny", "when": {"item_value": {"max": "5"}}, "then": {"eligible": False}}
    )
    text = _page(PolicyDocument.model_validate(data), "fr", buyer_country="US").text
    assert "Les articles d'une valeur inférieure à 5,00\xa0€" in text


def test_shop_name_and_url_are_escaped() -> None:
    page = _page(default_policy("EUR"), shop_name='A&B "<Shop>"', start_url=START_URL)
    assert "<title>Return policy – A&amp;B &#34;&lt;Shop&gt;&#34;</title>" in page.html
    assert page.text.startswith('Return policy – A&B "<Shop>"\n')
    assert "order=1&amp;lang=de" in page.html


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x.example/", "/returns", "https://"])
def test_only_web_addresses_start_a_return(url: str) -> None:
    with pytest.raises(ValueError, match="start_url"):
        _page(default_policy("EUR"), start_url=url)


def test_without_a_start_url_buyers_are_told_to_contact_the_shop() -> None:
    page = _page(default_policy("EUR"), "it")
    assert CATALOGUES["it"]["start_contact"] in page.html.replace("&#39;", "'")
    assert "<a " not in page.html


# ------------------------------------------------------------------ languages, money


@pytest.mark.parametrize(
    ("tag", "key"),
    [
        ("de-DE", "de"),
        ("de_AT", "de"),
        ("FR-ca", "fr"),
        ("zh-CN", "zh-Hans"),
        ("zh-Hans", "zh-Hans"),
        ("zh_Hans_SG", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("ja-JP", "ja"),
        ("es-419", "es"),
        ("zh-TW", "en"),
        ("zh-Hant", "en"),
        ("tlh", "en"),
        ("nl-NL", "en"),
        ("", "en"),
    ],
)
def test_language_tags(tag: str, key: str) -> None:
    assert resolve_language(tag)[0] == key


def test_unknown_language_falls_back_to_english() -> None:
    page = _page(default_policy("EUR"), "tlh-KX")
    assert page.language == "en"
    assert '<html lang="en">' in page.html
    assert EN["h_window"] in page.text


def test_region_of_the_tag_formats_numbers() -> None:
    page = _page(default_policy("EUR"), "de-AT")
    assert page.language == "de"
    assert format_currency(Decimal(25), "EUR", locale="de_AT") in page.text


@pytest.mark.parametrize(("key", "locale", "tag"), LANGUAGES)
def test_yen_amounts_have_no_decimals(key: str, locale: str, tag: str) -> None:
    page = _page(default_policy("JPY"), tag, currency="JPY", buyer_country="JP")
    for amount in (3750, 22500, 2250):  # fee cap, inspection and returnless thresholds
        formatted = format_currency(Decimal(amount), "JPY", locale=locale)
        assert not re.search(r"\d[.,]\d\d(?!\d)", formatted), formatted
        assert formatted in page.text, (key, formatted)
    assert "3,750.00" not in page.text and "3.750,00" not in page.text


def test_japanese_amounts_and_headings() -> None:
    page = _page(default_policy("JPY"), "ja", currency="JPY", buyer_country="JP")
    assert "（上限￥3,750）" in page.html
    assert "（上限￥3,750）" in _flat(page.text)
    assert "<h2" in page.html and "返品期限</h2>" in page.html
