"""The bulk writer's event text: canonical JSON put together by hand must be byte for byte
what ``canonical`` makes of the same values, or the hash chain would not verify."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from returnguard.audit import service as audit
from returnguard.audit.chain import GENESIS, canonical, chain_hash, hash_body
from returnguard.kit.db import new_id_texts, new_ids
from returnguard.orders.bulk import created_state, created_state_json

AWKWARD = [
    "plain",
    'quote " and \\ backslash',
    "tab\tnew\nline\r\x01\x1f\x7f",
    "Grüße, 東京, emoji 📦",
    "line sep \u2028 para \u2029",
    "",
]


def _order(text: str, *, buyer: bool, delivered: bool, micro: int) -> dict[str, Any]:
    return {
        "external_id": text or "A-1",
        "currency": "EUR",
        "ordered_at": datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=UTC),
        "delivered_at": datetime(2026, 1, 5, tzinfo=UTC) if delivered else None,
        "ship_to_country": "DE" if buyer else None,
        "buyer_id": uuid.uuid4() if buyer else None,
        "shipping_minor": 499,
        "shipping_tax_minor": 0,
        "captured_minor": 10**15,
        "payment_reference": text if buyer else None,
    }


def _lines(text: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"{text}{i}",
            "sku": text or "SKU",
            "quantity": i + 1,
            "unit_price_minor": 1999 * i,
            "tax_minor": 7 * i,
            "discount_minor": 0,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("buyer", [True, False])
def test_the_bulk_writers_created_state_text_is_its_canonical_json(text: str, buyer: bool) -> None:
    for n_lines, micro in [(1, 0), (3, 123456), (0, 1)]:
        order = _order(text, buyer=buyer, delivered=buyer, micro=micro)
        lines = _lines(text, n_lines)
        assert created_state_json(order, lines) == canonical(created_state(order, lines))


@pytest.mark.parametrize("text", AWKWARD)
def test_an_event_hashed_from_its_after_text_hashes_as_the_event_itself(text: str) -> None:
    order = _order(text, buyer=True, delivered=False, micro=7)
    after = created_state(order, _lines(text, 2))
    for return_id, actor_id, before, data in [
        (None, None, None, None),
        (uuid.uuid4(), text, {"status": text, "n": 1}, {"k": [text, None, True]}),
    ]:
        row = {
            "seq": 123456789,
            "organization_id": uuid.uuid4(),
            "subject_type": "order",
            "subject_id": text or str(uuid.uuid4()),
            "subject_seq": 3,
            "return_id": return_id,
            "action": "order.created",
            "actor_type": "system",
            "actor_id": actor_id,
            "actor_label": text,
            "before": before,
            "after": after,
            "data": data,
            "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        }
        expected = chain_hash(GENESIS, hash_body(row))
        assert audit._chain_hash_text(GENESIS, row, canonical(after)) == expected


def test_ids_drawn_in_bulk_are_distinct_time_ordered_uuids_in_canonical_form() -> None:
    texts = new_id_texts(5_000)
    ids = [uuid.UUID(text) for text in texts]
    assert len(set(texts)) == len(texts)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert [str(i) for i in ids] == texts
    # One call's ids increase one after the other (each insert goes to the b-tree's right
    # edge); a later call's are later, to the millisecond.
    assert texts == sorted(texts)
    time.sleep(0.002)
    later = new_ids(3)
    assert later == sorted(later) and str(later[0]) > texts[-1]
    assert all(i.version == 7 for i in later)
    assert new_id_texts(0) == [] and new_ids(0) == []
