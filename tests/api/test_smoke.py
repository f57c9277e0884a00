from __future__ import annotations

from tests.conftest import Api


def test_return_goes_from_request_to_inspection(api: Api) -> None:
    api.channel()
    order = api.order()
    ret = api.open_return(order)
    assert ret["status"] == "requested"
    rid = ret["id"]
    r = api.post(f"/api/v1/returns/{rid}/approve", {})
    assert r.status_code == 200, r.text
    assert r.json()["lines"][0]["quantities"]["approved"] == 1
    r = api.post(f"/api/v1/returns/{rid}/shipments", {"carrier": "DHL", "tracking_number": "X1"})
    assert r.json()["status"] == "in_transit", r.text
    line_id = ret["lines"][0]["id"]
    r = api.post(
        f"/api/v1/returns/{rid}/receive", {"lines": [{"return_line_id": line_id, "quantity": 1}]}
    )
    assert r.json()["status"] == "received", r.text
    r = api.post(
        f"/api/v1/returns/{rid}/inspections",
        {"lines": [{"return_line_id": line_id, "passed": 1, "failed": 0}]},
    )
    assert r.json()["status"] == "inspected", r.text
    events = api.get(f"/api/v1/returns/{rid}/events").json()
    assert [e["action"] for e in events] == [
        "return.created",
        "return.approve",
        "return.ship",
        "return.receive",
        "return.inspect",
    ]
