"""The return policy page at its public address: no key, languages, caching, rate limit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from returnguard.domain.policy.defaults import default_policy_data
from returnguard.policies.page_messages import CATALOGUES
from returnguard.policies.public import CACHE_MAX_AGE, PageRateLimiter
from tests.conftest import Api

PROBLEM = "application/problem+json"


def _shop(api: Api, code: str = "shop-de", language: str = "de") -> str:
    """A channel in EUR with the built-in default policy; its public page address."""
    r = api.post(
        "/api/v1/channels",
        {
            "code": code,
            "name": "Nordlicht Outdoor",
            "marketplace": "shopify",
            "country": "DE",
            "currency": "EUR",
            "language": language,
        },
    )
    assert r.status_code == 201, r.text
    return f"/policies/{api.tenant.organization_id}/{code}"


def _window_sentence(language: str, days: int) -> str:
    messages = CATALOGUES[language]
    period = messages["period_days_other"].format(n=days)
    return messages["window_days"].format(period=period)


def test_buyers_open_the_page_without_a_key(api: Api, client: TestClient) -> None:
    url = _shop(api)
    r = client.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-language"] == "de"
    assert '<html lang="de">' in r.text
    assert _window_sentence("de", 30) in r.text
    assert r.headers["cache-control"] == f"public, max-age={CACHE_MAX_AGE}"
    assert r.headers["vary"] == "Accept-Language"
    assert r.headers["etag"].startswith('"') and r.headers["etag"].endswith('"')

    text = client.get(url, params={"format": "text"})
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.text.startswith("Rückgabebedingungen \u2013 Nordlicht Outdoor\n")
    assert "<" not in text.text


def test_language_from_the_query_then_the_browser_then_the_channel(
    api: Api, client: TestClient
) -> None:
    url = _shop(api)

    def language(**kwargs: Any) -> str:
        r = client.get(url, **kwargs)
        assert r.status_code == 200, r.text
        assert f'<html lang="{r.headers["content-language"]}">' in r.text
        return str(r.headers["content-language"])

    assert language() == "de"
    assert language(headers={"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8"}) == "fr"
    assert language(headers={"Accept-Language": "nl-NL, ja;q=0.7, en;q=0.3"}) == "ja"
    assert language(headers={"Accept-Language": "en-GB,en;q=0.9"}) == "en"
    # Nothing the page is written in: the channel's language, not English.
    assert language(headers={"Accept-Language": "nl-NL, tlh;q=0.5, *;q=0.1"}) == "de"
    assert language(headers={"Accept-Language": "es;q=0, it"}) == "it"
    assert language(params={"language": "zh-CN"}, headers={"Accept-Language": "fr"}) == "zh-Hans"


def test_unknown_organization_or_channel_is_the_same_404(api: Api, client: TestClient) -> None:
    url = _shop(api)
    org = api.tenant.organization_id
    answers = [
        client.get(f"/policies/{uuid.uuid4()}/shop-de"),
        client.get(f"/policies/{org}/shop-fr"),
        client.get("/policies/not-an-id/shop-de"),
    ]
    for r in answers:
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == PROBLEM
    bodies = [{k: v for k, v in r.json().items() if k != "instance"} for r in answers]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["code"] == "not_found"
    assert bodies[0]["detail"] == "no return policy page at this address"
    assert client.get(url).status_code == 200


def test_another_shops_channel_code_is_not_found_under_this_organization(
    api: Api, client: TestClient, db: Any
) -> None:
    from tests.conftest import make_tenant

    other = Api(client, make_tenant(db, "Other Shop GmbH"))
    theirs = _shop(other, code="their-shop")
    assert client.get(theirs).status_code == 200
    _shop(api)
    mine_with_their_code = f"/policies/{api.tenant.organization_id}/their-shop"
    assert client.get(mine_with_their_code).status_code == 404


def test_etag_names_version_language_country_and_format(api: Api, client: TestClient) -> None:
    url = _shop(api)
    first = client.get(url)
    etag = first.headers["etag"]
    assert client.get(url).headers["etag"] == etag

    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == f"public, max-age={CACHE_MAX_AGE}"
    assert client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200

    variants = [
        client.get(url, params={"language": "en"}),
        client.get(url, params={"buyer_country": "FR"}),
        client.get(url, params={"buyer_country": "us"}),
        client.get(url, params={"format": "text"}),
        client.get(url, params={"format": "json"}),
        client.get(url, headers={"Accept-Language": "it"}),
    ]
    tags = {r.headers["etag"] for r in variants}
    assert len(tags) == len(variants) and etag not in tags
    # Asked differently, the same page: the same ETag.
    assert client.get(url, params={"language": "de"}).headers["etag"] == etag
    assert client.get(url, headers={"Accept-Language": "de, en;q=0.5"}).headers["etag"] == etag

    # A new policy published for the channel: a new ETag and the new text at once.
    document = default_policy_data("EUR")
    document["defaults"]["return_window_days"] = 45
    created = api.post("/api/v1/policies", {"name": "Longer window", "document": document})
    assert created.status_code == 201, created.text
    policy_id = created.json()["id"]
    assert api.post(f"/api/v1/policies/{policy_id}/publish", {"version": 1}).status_code == 200
    r = api.post("/api/v1/channels/shop-de/policy", {"policy_id": policy_id})
    assert r.status_code == 200, r.text
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert _window_sentence("de", 45) in changed.text
    assert _window_sentence("de", 30) not in changed.text


def test_json_gives_the_promises_and_the_sentences_that_make_them(
    api: Api, client: TestClient
) -> None:
    url = _shop(api)
    data = client.get(url, params={"format": "json", "buyer_country": "US", "language": "en"})
    assert data.status_code == 200, data.text
    assert data.headers["content-type"] == "application/json"
    body = data.json()
    assert (body["language"], body["currency"], body["buyer_country"]) == ("en", "EUR", "US")
    html = client.get(url, params={"buyer_country": "US", "language": "en"}).text
    kinds = {p["kind"] for p in body["promises"]}
    assert {"window", "return_shipping", "restocking_fee", "inspection", "returnless"} <= kinds
    windows = {p["reason_class"]: p["last_day"] for p in body["promises"] if p["kind"] == "window"}
    assert windows == {"no_fault": 30, "seller_fault": 30}
    for promise in body["promises"]:
        assert promise["text"].replace("'", "&#39;") in html, promise
    paragraphs = [i for s in body["sections"] for b in s["blocks"] for i in b["items"]]
    assert any("within 30\xa0days of delivery" in p for p in paragraphs)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"buyer_country": "Germany"}, "buyer_country"),
        ({"format": "pdf"}, "format"),
        ({"language": "x" * 36}, "language"),
    ],
)
def test_bad_query_is_422_naming_the_parameter(
    api: Api, client: TestClient, params: dict[str, str], field: str
) -> None:
    url = _shop(api)
    r = client.get(url, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_too_many_requests_from_one_address_are_refused_for_a_while(
    api: Api, client: TestClient
) -> None:
    url = _shop(api)
    client.app.state.policy_page_limiter = PageRateLimiter("3/minute")  # type: ignore[attr-defined]
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 200]
    r = client.get(url)
    assert r.status_code == 429
    assert r.headers["content-type"] == PROBLEM
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 60
    problem = r.json()
    assert problem["code"] == "rate_limited" and problem["status"] == 429
    assert problem["retry_after"] == retry_after
    # Conditional requests count too, and the unknown addresses are limited the same way.
    assert client.get(f"/policies/{uuid.uuid4()}/x").status_code == 429
    # Another address is not affected.
    elsewhere = TestClient(client.app, client=("203.0.113.7", 40000))
    assert elsewhere.get(url).status_code == 200
    # The API itself is not rate-limited by the page's limit.
    assert api.get("/api/v1/channels").status_code == 200


def test_the_shops_own_route_still_works_and_names_the_public_one(
    api: Api, client: TestClient
) -> None:
    public = _shop(api)
    start = "https://shop.example/returns"
    r = api.get(
        "/api/v1/channels/shop-de/policy-page",
        params={"buyer_country": "DE", "start_url": start},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-language"] == "de"
    assert f'href="{start}"' in r.text
    assert r.headers["cache-control"] == "private, no-cache"
    link = r.headers["link"]
    assert link == f'<http://testserver{public}?buyer_country=DE&format=html>; rel="canonical"'
    canonical = client.get(link[1 : link.index(">")])
    assert canonical.status_code == 200
    # The same page, except that buyers are told to contact the shop instead of a link
    # that anyone could have put in the address.
    assert "href=" not in canonical.text
    assert CATALOGUES["de"]["start_contact"] in canonical.text
    assert client.get("/api/v1/channels/shop-de/policy-page").status_code == 401
