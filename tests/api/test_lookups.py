"""Finding one thing by the number people quote: a return by its RMA number, an order by
the marketplace's order id on its channel. Only ever in the caller's organization."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient

from returnguard.kit.db import Database
from tests.conftest import Api, make_tenant

RETURNS = "/api/v1/returns"


def _by_external_id(code: str, external_id: str) -> str:
    return f"/api/v1/channels/{code}/orders/{quote(external_id, safe='')}"


def _stranger(db: Database, client: TestClient) -> Api:
    return Api(client, make_tenant(db, "Other GmbH"))


# --- returns by RMA number --------------------------------------------------------------


def test_a_return_is_found_by_its_rma_number(api: Api) -> None:
    api.channel()
    order = api.order(quantity=3)
    first, second = api.open_return(order), api.open_return(order)
    assert first["number"].startswith("RMA-") and first["number"] != second["number"]
    r = api.get(f"{RETURNS}/by-rma/{first['number']}")
    assert r.status_code == 200, r.text
    found = r.json()
    assert found == api.get(f"{RETURNS}/{first['id']}").json()
    assert found["shipments"] == []  # the single return's detail, not a list row
    # Typed in lower case, as people do.
    assert api.get(f"{RETURNS}/by-rma/{first['number'].lower()}").json()["id"] == first["id"]


def test_the_list_filter_by_rma_gives_that_return_only(api: Api) -> None:
    api.channel()
    order = api.order(quantity=3)
    first, second = api.open_return(order), api.open_return(order)
    page = api.get(RETURNS, params={"rma": second["number"].lower()}).json()
    assert [r["id"] for r in page["items"]] == [second["id"]]
    assert page["next_cursor"] is None
    both = api.get(RETURNS, params={"rma": first["number"], "status": ["requested", "approved"]})
    assert [r["id"] for r in both.json()["items"]] == [first["id"]]
    none = api.get(RETURNS, params={"rma": first["number"], "status": "approved"}).json()
    assert none["items"] == []
    r = api.get(RETURNS, params={"rma": "RMA-" + "X" * 40})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["rma"]


def test_an_unknown_rma_number_is_a_404_problem(api: Api) -> None:
    r = api.get(f"{RETURNS}/by-rma/RMA-NOPE2345")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


def test_another_organizations_rma_number_is_not_found(
    api: Api, db: Database, client: TestClient
) -> None:
    api.channel()
    mine = api.open_return(api.order())
    stranger = _stranger(db, client)
    stranger.channel()
    theirs = stranger.open_return(stranger.order())
    assert stranger.get(f"{RETURNS}/by-rma/{mine['number']}").status_code == 404
    assert stranger.get(RETURNS, params={"rma": mine["number"]}).json()["items"] == []
    assert api.get(f"{RETURNS}/by-rma/{theirs['number']}").status_code == 404
    assert api.get(f"{RETURNS}/by-rma/{mine['number']}").json()["id"] == mine["id"]


# --- orders by marketplace order id -----------------------------------------------------


def test_an_order_is_found_by_its_channel_and_marketplace_id(api: Api) -> None:
    api.channel("amazon-de")
    api.channel("shop-fr")
    # The same marketplace id on two channels: two orders, each found on its channel.
    on_amazon = api.order("1001", channel="amazon-de")
    on_shop = api.order("1001", channel="shop-fr", price="5.00")
    assert on_amazon["id"] != on_shop["id"]
    for code, order in (("amazon-de", on_amazon), ("shop-fr", on_shop)):
        r = api.get(_by_external_id(code, "1001"))
        assert r.status_code == 200, r.text
        assert r.json() == api.get(f"/api/v1/orders/{order['id']}").json()
    # Without the channel, the list filter gives one per channel.
    page = api.get("/api/v1/orders", params={"external_id": "1001"}).json()
    assert {o["id"] for o in page["items"]} == {on_amazon["id"], on_shop["id"]}


def test_marketplace_ids_with_url_characters_are_found_encoded(api: Api) -> None:
    api.channel("shop-fr")
    for external_id in ("#1001", "A 1+2?x=1", "Bestellung-ü"):
        order = api.order(external_id, channel="shop-fr")
        r = api.get(_by_external_id("shop-fr", external_id))
        assert r.status_code == 200, (external_id, r.text)
        assert r.json()["id"] == order["id"]


def test_an_unknown_channel_or_order_id_is_a_404_problem(api: Api) -> None:
    api.channel("amazon-de")
    api.order("1001", channel="amazon-de")
    for path in (_by_external_id("amazon-de", "1002"), _by_external_id("shop-fr", "1001")):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "not_found"


def test_another_organizations_order_is_not_found_by_its_marketplace_id(
    api: Api, db: Database, client: TestClient
) -> None:
    api.channel("amazon-de")
    mine = api.order("1001", channel="amazon-de")
    stranger = _stranger(db, client)
    stranger.channel("amazon-de")
    stranger.channel("ebay-de")
    theirs = stranger.order("2002", channel="ebay-de")
    # The same channel code and id in another organization: each finds its own.
    also_theirs = stranger.order("1001", channel="amazon-de")
    assert api.get(_by_external_id("amazon-de", "1001")).json()["id"] == mine["id"]
    assert stranger.get(_by_external_id("amazon-de", "1001")).json()["id"] == also_theirs["id"]
    assert api.get(_by_external_id("ebay-de", "2002")).status_code == 404
    assert api.get("/api/v1/orders", params={"external_id": "2002"}).json()["items"] == []
    assert stranger.get(_by_external_id("ebay-de", "2002")).json()["id"] == theirs["id"]
    listed: list[Any] = api.get("/api/v1/orders", params={"external_id": "1001"}).json()["items"]
    assert [o["id"] for o in listed] == [mine["id"]]
