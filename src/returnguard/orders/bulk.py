"""Many orders at once: ``upsert_order`` for a batch, in a few statements per batch.

File imports (CSV now, marketplace reports later) bring orders by the thousand, nearly all
of them new. Writing them one ORM object at a time costs a dozen round trips per order;
here a batch costs a fixed handful of statements, whatever its size:

1. the buyers, products and existing orders of the batch are read in one query each;
2. each order is classified: *new*, *unchanged* (what is stored is exactly what
   ``upsert_order`` would leave behind) or *changed*;
3. new buyers and products are inserted with ``insert_missing`` (race-free, in key
   order; on PostgreSQL through a staging table, one INSERT … SELECT … RETURNING), and
   only those a concurrent writer inserted first are read back; changed contact details
   of known buyers are updated in one executemany;
4. new orders and their lines go in as multi-row inserts (COPY on PostgreSQL), the
   orders in key order, with time-ordered ids (``kit.db.new_ids``) drawn in that order
   and the lines in the order of their orders: every index keyed by an id (the primary
   keys, the lines' (order, line id) key, the events' chain key) is filled at its right
   edge instead of on a random page per row, and the lines' foreign-key checks walk the
   orders' index in order. Each order has its ``order.created`` event (the same event as
   ``upsert_order``'s), queued with ``audit.record_created`` as canonical JSON text made
   straight from the row values: a new order has no chain yet, so the event log hashes
   and writes those events in bulk at commit without looking up or locking their chains'
   heads, and without serialising their state again;
5. changed orders, which are rare in imports, go through ``upsert_order`` itself, one
   savepoint each, so every rule of an update (a line with returns stays, a refunded
   order keeps its amounts …) is the service's own and a refused update rejects that
   order alone.

Nothing is committed here (the caller owns the transaction); an error of the database
itself propagates, and the caller decides what to do with the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from json.encoder import encode_basestring
from typing import Any, cast

from sqlalchemy import any_, bindparam, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput, ReturnGuardError
from returnguard.kit.db import (
    JSONText,
    copy_tuples,
    insert_missing,
    new_id_texts,
    new_ids,
    utcnow,
)
from returnguard.kit.money import minor_digits
from returnguard.kit.schemas import MoneyIn
from returnguard.orders.models import Buyer, Channel, Order, OrderLine, Product
from returnguard.orders.schemas import OrderIn
from returnguard.orders.service import UnknownChannel, upsert_order

# Orders handled per round of statements: keeps every IN list and multi-row insert
# bounded whatever a caller passes (the CSV importer sends 2,000 at a time).
MAX_BATCH = 5_000

_ORDERS = cast(Any, Order.__table__)
_LINES = cast(Any, OrderLine.__table__)
_BUYERS = cast(Any, Buyer.__table__)

# Keys name a channel by its id's integer: a UUID hashes in Python code, an int (and a
# tuple of int and str) in C, and a batch looks its keys up some twenty times per order.
OrderKey = tuple[int, str]  # channel id (uuid.UUID.int), the channel's order id
BuyerKey = tuple[int, str]  # channel id (uuid.UUID.int), the channel's buyer id


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """What became of one order: its id, or the error that rejected it."""

    outcome: Outcome
    order_id: uuid.UUID | None = None
    error: ReturnGuardError | None = None


@dataclass(frozen=True)
class BulkResult:
    """One outcome per order given, in the same order."""

    outcomes: list[OrderOutcome]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome is outcome)

    @property
    def created(self) -> int:
        return self.count(Outcome.CREATED)

    @property
    def updated(self) -> int:
        return self.count(Outcome.UPDATED)

    @property
    def unchanged(self) -> int:
        return self.count(Outcome.UNCHANGED)

    @property
    def rejected(self) -> int:
        return self.count(Outcome.REJECTED)


def upsert_orders(
    session: Session, actor: Actor, channels: Mapping[str, Channel], orders: Sequence[OrderIn]
) -> BulkResult:
    """Create or update every order as ``upsert_order`` would, one after the other; a
    rejected order changes nothing and leaves the others be. ``channels`` maps the codes
    of the actor's organization's channels to them."""
    outcomes: list[OrderOutcome | None] = [None] * len(orders)
    first: list[int] = []
    repeats: list[int] = []
    seen: set[OrderKey] = set()
    # The ids of the actor's own channels, read off the ORM objects once, not per order.
    own = {
        code: channel.id
        for code, channel in channels.items()
        if channel.organization_id == actor.organization_id
    }
    for i, data in enumerate(orders):
        problems = data.problems()
        channel_id = own.get(data.channel)
        if problems:
            outcomes[i] = _rejected(
                InvalidInput(
                    "; ".join(f"{p['field']}: {p['message']}" for p in problems), errors=problems
                )
            )
        elif channel_id is None:
            outcomes[i] = _rejected(
                UnknownChannel.field("channel", f"no channel with code {data.channel!r}")
            )
        elif (channel_id.int, data.external_id) in seen:
            repeats.append(i)  # applied after the first, as a second upsert would be
        else:
            seen.add((channel_id.int, data.external_id))
            first.append(i)
    for start in range(0, len(first), MAX_BATCH):
        batch = first[start : start + MAX_BATCH]
        done = _Batch(session, actor, channels, [orders[i] for i in batch]).run()
        for i, outcome in zip(batch, done, strict=True):
            outcomes[i] = outcome
    if repeats:
        again = upsert_orders(session, actor, channels, [orders[i] for i in repeats])
        for i, outcome in zip(repeats, again.outcomes, strict=True):
            outcomes[i] = outcome
    assert all(o is not None for o in outcomes)
    return BulkResult(cast(list[OrderOutcome], outcomes))


_ORDER_COLUMNS = (
    "id",
    "organization_id",
    "channel_id",
    "external_id",
    "buyer_id",
    "currency",
    "ordered_at",
    "delivered_at",
    "ship_to_country",
    "shipping_minor",
    "shipping_tax_minor",
    "captured_minor",
    "payment_reference",
    "created_at",
    "updated_at",
)
_LINE_COLUMNS = (
    "id",
    "organization_id",
    "order_id",
    "position",
    "external_id",
    "product_id",
    "sku",
    "title",
    "quantity",
    "unit_price_minor",
    "tax_minor",
    "discount_minor",
)


def _insert_tuples(
    session: Session,
    table: Any,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]] | Iterator[tuple[Any, ...]],
) -> None:
    """A multi-row insert of ``rows`` (values in the order of ``columns``; a list, or an
    iterator of at least one row, consumed as it is sent): on PostgreSQL a ``COPY``,
    several times faster than an executemany of INSERTs; elsewhere an executemany
    (SQLite runs it in-process)."""
    if isinstance(rows, list) and not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    copy_tuples(session, table.name, columns, rows)


# created_state as canonical JSON (audit.canonical: keys sorted, no spaces), written
# directly: the bulk writer's events are hashed and stored from this text. A test holds
# it equal to canonical(created_state(...)).
_ORDER_STATE = (
    '{"buyer_id":%s,"captured_minor":%d,"currency":%s,"delivered_at":%s,"external_id":%s,'
    '"lines":[%s],"ordered_at":%s,"payment_reference":%s,"ship_to_country":%s,'
    '"shipping_minor":%d,"shipping_tax_minor":%d}'
)
_LINE_STATE = (
    '{"discount_minor":%d,"external_id":%s,"quantity":%d,"sku":%s,"tax_minor":%d,'
    '"unit_price_minor":%d}'
)


def _json(value: str | None) -> str:
    """A string (or None) as canonical JSON writes it (``ensure_ascii=False``)."""
    return "null" if value is None else encode_basestring(value)


def _json_time(value: datetime | None) -> str:
    return "null" if value is None else f'"{value.isoformat()}"'


def _line_json(
    discount: int, external_id: str, quantity: int, sku: str, tax: int, unit_price: int
) -> str:
    return _LINE_STATE % (discount, _json(external_id), quantity, _json(sku), tax, unit_price)


def _order_json(
    buyer_id: uuid.UUID | None,
    captured: int,
    currency: str,
    delivered_at: datetime | None,
    external_id: str,
    lines: list[str],
    ordered_at: datetime,
    payment_reference: str | None,
    ship_to_country: str | None,
    shipping: int,
    shipping_tax: int,
) -> JSONText:
    """The order's created_state as canonical JSON, its lines' (``_line_json``) given."""
    return JSONText(
        _ORDER_STATE
        % (
            "null" if buyer_id is None else f'"{buyer_id}"',
            captured,
            _json(currency),
            _json_time(delivered_at),
            _json(external_id),
            ",".join(lines),
            _json_time(ordered_at),
            _json(payment_reference),
            _json(ship_to_country),
            shipping,
            shipping_tax,
        )
    )


def created_state_json(order: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> JSONText:
    """``canonical(created_state(order, lines))`` as the bulk writer makes it (its event
    text, hashed and stored as it is), from the same rows."""
    return _order_json(
        order["buyer_id"],
        order["captured_minor"],
        order["currency"],
        order["delivered_at"],
        order["external_id"],
        [
            _line_json(
                line["discount_minor"],
                line["external_id"],
                line["quantity"],
                line["sku"],
                line["tax_minor"],
                line["unit_price_minor"],
            )
            for line in lines
        ],
        order["ordered_at"],
        order["payment_reference"],
        order["ship_to_country"],
        order["shipping_minor"],
        order["shipping_tax_minor"],
    )


def created_state(order: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``after`` of an ``order.created`` event, from the order's row and its lines'
    rows (by position), as plain JSON: the fields the order service records of an order.
    A test holds it equal to the service's own record of the same order."""
    delivered_at = order["delivered_at"]
    buyer_id = order["buyer_id"]
    return {
        "external_id": order["external_id"],
        "currency": order["currency"],
        "ordered_at": order["ordered_at"].isoformat(),
        "delivered_at": delivered_at.isoformat() if delivered_at is not None else None,
        "ship_to_country": order["ship_to_country"],
        "buyer_id": str(buyer_id) if buyer_id is not None else None,
        "shipping_minor": order["shipping_minor"],
        "shipping_tax_minor": order["shipping_tax_minor"],
        "captured_minor": order["captured_minor"],
        "payment_reference": order["payment_reference"],
        "lines": [
            {
                "external_id": line["external_id"],
                "sku": line["sku"],
                "quantity": line["quantity"],
                "unit_price_minor": line["unit_price_minor"],
                "tax_minor": line["tax_minor"],
                "discount_minor": line["discount_minor"],
            }
            for line in lines
        ],
    }


def _same(value: Any) -> Any:
    return value


def _rejected(error: ReturnGuardError) -> OrderOutcome:
    return OrderOutcome(Outcome.REJECTED, error=error)


_MINOR_UNITS: dict[tuple[str, str], int] = {}


def _minor(money: MoneyIn | None) -> int:
    """``money.minor``, remembered: an import repeats the same few thousand amounts, and
    each conversion parses the decimal again. An amount in the form MoneyIn validates to
    (the currency's exact number of decimals: "19.99", "1980") is read as digits."""
    if money is None:
        return 0
    key = (money.amount, money.currency)
    found = _MINOR_UNITS.get(key)
    if found is None:
        amount = money.amount
        whole, point, fraction = amount.partition(".")
        digits = minor_digits(money.currency)
        if (
            whole.isascii()
            and whole.isdigit()
            and (fraction.isascii() and fraction.isdigit() if point else True)
            and len(fraction) == digits
        ):
            found = int(whole + fraction)
        else:
            found = money.minor
        if len(_MINOR_UNITS) >= 10_000:
            _MINOR_UNITS.clear()
        _MINOR_UNITS[key] = found
    return found


@dataclass
class _Contact:
    """A buyer's email, name and country as the orders so far leave them."""

    id: uuid.UUID | None
    email: str | None
    name: str | None
    country: str | None

    def copy(self) -> _Contact:
        return _Contact(self.id, self.email, self.name, self.country)

    def values(self) -> tuple[str | None, str | None, str | None]:
        return self.email, self.name, self.country


@dataclass
class _Stored:
    """An order as stored: ``header`` in the order of the columns _load_orders reads
    after the key, ``lines`` as (position, external id, … product id) by position."""

    id: uuid.UUID
    header: tuple[Any, ...]
    lines: list[tuple[Any, ...]]


_BUYER_ID = 4
_PAYMENT_REFERENCE = 8
_NO_ID = uuid.UUID(int=0)


class _Batch:
    """One round: distinct (channel, order id) keys, at most MAX_BATCH orders."""

    def __init__(
        self,
        session: Session,
        actor: Actor,
        channels: Mapping[str, Channel],
        orders: list[OrderIn],
    ) -> None:
        self.session = session
        self.actor = actor
        self.org_id = actor.organization_id
        self.orders = orders
        ids = {code: channel.id for code, channel in channels.items()}
        self.channel_ids = [ids[o.channel] for o in orders]
        # Each order's channel as its key (uuid.UUID.int), and the channels by key.
        self.channel_keys = [cid.int for cid in self.channel_ids]
        self.channel_uuids = {cid.int: cid for cid in ids.values()}
        self.postgresql = session.get_bind().dialect.name == "postgresql"
        self.buyer_keys: list[BuyerKey | None] = [
            (key, o.buyer.external_id) if o.buyer is not None else None
            for key, o in zip(self.channel_keys, orders, strict=True)
        ]

    def run(self) -> list[OrderOutcome]:
        contacts = self._load_buyers()
        products = self._load_products(o.sku for data in self.orders for o in data.lines)
        stored = self._load_orders()
        # What each buyer's country is once the batch's orders before and including this
        # one are applied: an order without ship_to_country ships to it (as upsert_order).
        running = {key: contact.copy() for key, contact in contacts.items()}
        new: list[int] = []
        changed: list[int] = []
        outcomes: list[OrderOutcome | None] = [None] * len(self.orders)
        buyer_country: list[str | None] = []
        for i, data in enumerate(self.orders):
            contact = self._apply_contact(running, i)
            buyer_country.append(contact.country if contact is not None else None)
            found = stored.get((self.channel_keys[i], data.external_id))
            if found is None:
                new.append(i)
            elif self._stays(data, found, contact, products):
                outcomes[i] = OrderOutcome(Outcome.UNCHANGED, found.id)
            else:
                changed.append(i)

        # Contact details: what the new and unchanged orders say, in order. A changed
        # order applies its own in upsert_order below (and none at all if refused).
        changed_set = set(changed)
        kept = [i for i in range(len(self.orders)) if i not in changed_set]
        # With no changed order, what the orders leave is what ``running`` holds already.
        written = self._write_buyers(contacts, kept, None if changed else running)
        self._insert_products([self.orders[i] for i in new], products)
        if new:
            ids = self._insert_orders(new, written, buyer_country, products)
            for i, order_id in zip(new, ids, strict=True):
                outcomes[i] = OrderOutcome(Outcome.CREATED, order_id)
        for i in changed:
            outcomes[i] = self._update(self.orders[i])
        return cast(list[OrderOutcome], outcomes)

    # --- reading ---------------------------------------------------------------------

    def _read(self, statement: Any) -> Any:
        """Rows of a select of plain columns, without the ORM's result machinery (after
        a flush, as the session's own execute would autoflush: an order updated by
        upsert_order earlier in the batch is read as it now is)."""
        self.session.flush()
        return self.session.connection().execute(statement)

    def _among(self, column: Any, values: Iterable[Any]) -> Any:
        """``column IN (values)``; on PostgreSQL ``= ANY(array)``, one parameter instead of
        thousands (the statement stays small and its plan is cached)."""
        if self.postgresql:
            return column == any_(literal(list(values), ARRAY(column.type)))
        return column.in_(list(values))

    def _load_buyers(self, keys: Iterable[BuyerKey] | None = None) -> dict[BuyerKey, _Contact]:
        """Every buyer the batch names (or of ``keys``), stored or not (id None) yet."""
        wanted = set(keys) if keys is not None else {k for k in self.buyer_keys if k is not None}
        contacts = {key: _Contact(None, None, None, None) for key in wanted}
        if not wanted:
            return contacts
        rows = self._read(
            select(
                Buyer.id,
                Buyer.channel_id,
                Buyer.external_id,
                Buyer.email,
                Buyer.name,
                Buyer.country,
            ).where(
                Buyer.organization_id == self.org_id,
                self._among(
                    Buyer.channel_id, {self.channel_uuids[channel] for channel, _ in wanted}
                ),
                self._among(Buyer.external_id, {external for _, external in wanted}),
            )
        )
        for id_, channel_id, external_id, email, name, country in rows:
            key = (channel_id.int, external_id)
            if key in wanted:
                contacts[key] = _Contact(id_, email, name, country)
        return contacts

    def _load_products(self, skus: Iterator[str]) -> dict[str, tuple[uuid.UUID, str]]:
        """(id, title) by SKU of the stored products among ``skus``."""
        wanted = set(skus)
        if not wanted:
            return {}
        rows = self._read(
            select(Product.sku, Product.id, Product.title).where(
                Product.organization_id == self.org_id, self._among(Product.sku, wanted)
            )
        )
        return {sku: (id_, title) for sku, id_, title in rows}

    def _load_orders(self) -> dict[OrderKey, _Stored]:
        """The batch's orders that exist already, with their lines: two queries."""
        keys = {(key, o.external_id) for key, o in zip(self.channel_keys, self.orders, strict=True)}
        rows = self._read(
            select(
                Order.id,
                Order.channel_id,
                Order.external_id,
                Order.currency,
                Order.ordered_at,
                Order.delivered_at,
                Order.ship_to_country,
                Order.buyer_id,
                Order.shipping_minor,
                Order.shipping_tax_minor,
                Order.captured_minor,
                Order.payment_reference,
            ).where(
                Order.organization_id == self.org_id,
                self._among(Order.channel_id, {self.channel_uuids[key] for key, _ in keys}),
                self._among(Order.external_id, {external for _, external in keys}),
            )
        )
        stored: dict[OrderKey, _Stored] = {}
        by_id: dict[uuid.UUID, _Stored] = {}
        for id_, channel_id, external_id, *header in rows:
            key = (channel_id.int, external_id)
            if key in keys:
                stored[key] = by_id[id_] = _Stored(id_, tuple(header), [])
        if by_id:
            lines = self._read(
                select(
                    OrderLine.order_id,
                    OrderLine.position,
                    OrderLine.external_id,
                    OrderLine.sku,
                    OrderLine.title,
                    OrderLine.quantity,
                    OrderLine.unit_price_minor,
                    OrderLine.tax_minor,
                    OrderLine.discount_minor,
                    OrderLine.product_id,
                )
                .where(self._among(OrderLine.order_id, by_id))
                .order_by(OrderLine.order_id, OrderLine.position)
            )
            for order_id, *line in lines:
                by_id[order_id].lines.append(tuple(line))
        return stored

    # --- deciding ----------------------------------------------------------------------

    def _apply_contact(self, contacts: dict[BuyerKey, _Contact], i: int) -> _Contact | None:
        """Apply order i's buyer details as ``upsert_order`` does: a value given replaces
        the stored one, an empty one keeps it."""
        key = self.buyer_keys[i]
        buyer = self.orders[i].buyer
        if key is None or buyer is None:
            return None
        contact = contacts[key]
        contact.email = buyer.email or contact.email
        contact.name = buyer.name or contact.name
        contact.country = buyer.country or contact.country
        return contact

    def _stays(
        self,
        data: OrderIn,
        found: _Stored,
        contact: _Contact | None,
        products: Mapping[str, tuple[uuid.UUID, str]],
    ) -> bool:
        """Whether upsert_order would leave the stored order exactly as it is."""
        if contact is not None and contact.id is None:
            return False  # a new buyer: the order changes hands
        ship_to = data.ship_to_country or (contact.country if contact is not None else None)
        header = (
            data.currency,
            data.ordered_at,
            data.delivered_at,
            ship_to,
            contact.id if contact is not None else found.header[_BUYER_ID],
            _minor(data.shipping),
            _minor(data.shipping_tax),
            _minor(data.captured),
            data.payment_reference or found.header[_PAYMENT_REFERENCE],
        )
        if header != found.header or len(data.lines) != len(found.lines):
            return False
        for position, (line, have) in enumerate(zip(data.lines, found.lines, strict=True)):
            product = products.get(line.sku)
            if product is None:
                return False
            want = (
                position,
                line.external_id,
                line.sku,
                line.title or product[1],
                line.quantity,
                _minor(line.unit_price),
                _minor(line.tax),
                _minor(line.discount),
                product[0],
            )
            if want != have:
                return False
        return True

    # --- writing -----------------------------------------------------------------------

    def _fold(
        self, start: Mapping[BuyerKey, _Contact], orders: list[int]
    ) -> dict[BuyerKey, _Contact]:
        contacts = {key: contact.copy() for key, contact in start.items()}
        for i in orders:
            self._apply_contact(contacts, i)
        return contacts

    def _write_buyers(
        self,
        stored: dict[BuyerKey, _Contact],
        orders: list[int],
        folded: dict[BuyerKey, _Contact] | None = None,
    ) -> dict[BuyerKey, _Contact]:
        """Insert the buyers ``orders`` name that are new, update the known ones whose
        details they change; the buyers' details as written, with their ids. ``folded``:
        ``self._fold(stored, orders)`` if the caller has it (it is then updated)."""
        needed = {key for i in orders if (key := self.buyer_keys[i]) is not None}
        written = folded if folded is not None else self._fold(stored, orders)
        missing = [
            {
                "id": None,
                "organization_id": self.org_id,
                "channel_id": self.channel_uuids[channel],
                "external_id": external_id,
                "email": contact.email,
                "name": contact.name,
                "country": contact.country,
            }
            for (channel, external_id), contact in written.items()
            if contact.id is None and (channel, external_id) in needed
        ]
        if missing:
            for row, id_ in zip(missing, new_ids(len(missing)), strict=True):
                row["id"] = id_
            inserted = insert_missing(
                self.session,
                Buyer,
                ("organization_id", "channel_id", "external_id"),
                missing,
                returning=("channel_id", "external_id"),
            )
            keys = [
                (cast(uuid.UUID, row["channel_id"]).int, cast(str, row["external_id"]))
                for row in missing
            ]
            # Ours that went in are as we wrote them; read back the others' ids: a
            # concurrent writer inserted them first, and then its details are the stored
            # ones ours apply to.
            loaded: dict[BuyerKey, _Contact] = {}
            if inserted is not None:
                ours = {(channel_id.int, external_id) for channel_id, external_id in inserted}
                for key, row in zip(keys, missing, strict=True):
                    if key in ours:
                        loaded[key] = _Contact(
                            cast(uuid.UUID, row["id"]),
                            cast(str | None, row["email"]),
                            cast(str | None, row["name"]),
                            cast(str | None, row["country"]),
                        )
            if len(loaded) < len(keys):
                loaded |= self._load_buyers(key for key in keys if key not in loaded)
            stored = stored | loaded
            if all(
                loaded[key].values() == (row["email"], row["name"], row["country"])
                for key, row in zip(keys, missing, strict=True)
            ):
                # Ours went in (or the same details did): the orders applied to what is
                # stored leave exactly what they left before, now with the stored ids.
                for key in keys:
                    written[key].id = loaded[key].id
            else:
                written = self._fold(stored, orders)
        changes = sorted(
            (
                {"b_id": c.id, "b_email": c.email, "b_name": c.name, "b_country": c.country}
                for key, c in written.items()
                if key in needed and c.id is not None and c.values() != stored[key].values()
            ),
            key=lambda change: str(change["b_id"]),
        )
        if changes:
            self.session.execute(
                _BUYERS.update()
                .where(_BUYERS.c.id == bindparam("b_id"))
                .values(
                    email=bindparam("b_email"),
                    name=bindparam("b_name"),
                    country=bindparam("b_country"),
                ),
                changes,
            )
        return written

    def _insert_products(
        self, orders: list[OrderIn], products: dict[str, tuple[uuid.UUID, str]]
    ) -> None:
        """Create the new orders' unknown SKUs: from the first order that names one, with
        its last line of that SKU (as one upsert_order after the other would)."""
        missing: dict[str, dict[str, Any]] = {}
        for data in orders:
            per_order = {line.sku: line for line in data.lines if line.sku not in products}
            for sku, line in per_order.items():
                missing.setdefault(
                    sku,
                    {
                        "id": None,
                        "organization_id": self.org_id,
                        "sku": sku,
                        "title": line.title or "",
                        "asin": line.asin,
                        "category": line.category,
                    },
                )
        if not missing:
            return
        for row, id_ in zip(missing.values(), new_ids(len(missing)), strict=True):
            row["id"] = id_
        inserted = insert_missing(
            self.session,
            Product,
            ("organization_id", "sku"),
            list(missing.values()),
            returning=("sku",),
        )
        # Ours that went in are as we wrote them; the others' ids (a concurrent writer
        # inserted them first) are read back.
        ours = {sku for (sku,) in inserted or ()}
        for sku in ours:
            row = missing[sku]
            products[sku] = (row["id"], row["title"])
        if len(ours) < len(missing):
            products.update(self._load_products(sku for sku in missing if sku not in ours))

    def _insert_orders(
        self,
        new: list[int],
        written: Mapping[BuyerKey, _Contact],
        buyer_country: list[str | None],
        products: Mapping[str, tuple[uuid.UUID, str]],
    ) -> list[uuid.UUID]:
        now = utcnow()
        n_lines = sum(len(self.orders[i].lines) for i in new)
        # COPY (PostgreSQL) takes ids as text: each id is turned into text once, and the
        # lines' ids are drawn as text. SQLAlchemy's inserts (SQLite) take UUID objects.
        value: Any = str if self.postgresql else _same
        line_ids = iter(new_id_texts(n_lines) if self.postgresql else new_ids(n_lines))
        org_id = value(self.org_id)
        channel_values = {key: value(cid) for key, cid in self.channel_uuids.items()}
        # The orders are written in key order, so two imports of overlapping new orders
        # wait for each other's rows in one order instead of deadlocking; their ids (time
        # ordered, kit/db.new_ids) are drawn in that order, and the lines' in the order of
        # their orders, so every index keyed by an id is filed at its right edge.
        channel_names = {key: str(cid) for key, cid in self.channel_uuids.items()}
        by_key = sorted(
            range(len(new)),
            key=lambda k: (
                channel_names[self.channel_keys[new[k]]],
                self.orders[new[k]].external_id,
            ),
        )
        ids: list[uuid.UUID] = [_NO_ID] * len(new)
        for k, drawn in zip(by_key, new_ids(len(new)), strict=True):
            ids[k] = drawn
        buyer_ids: dict[BuyerKey, Any] = {}
        product_ids: dict[str, tuple[Any, str]] = {}
        minor = _minor
        line_rows: list[tuple[Any, ...]] = []
        states: list[tuple[uuid.UUID | str, JSONText] | None] = [None] * len(new)

        def order_rows() -> Iterator[tuple[Any, ...]]:
            # Each order's row is sent (COPY) as soon as it is made, so PostgreSQL files
            # the orders while their lines, events and the next rows are being made.
            for k in by_key:
                i, order_uuid = new[k], ids[k]
                data = self.orders[i]
                key = self.buyer_keys[i]
                buyer_id = written[key].id if key is not None else None
                if key is None:
                    buyer_value = None
                elif (buyer_value := buyer_ids.get(key)) is None:
                    buyer_value = buyer_ids[key] = value(buyer_id)
                order_id = value(order_uuid)
                ship_to_country = data.ship_to_country or buyer_country[i]
                shipping = minor(data.shipping)
                shipping_tax = minor(data.shipping_tax)
                captured = minor(data.captured)
                yield (
                    order_id,
                    org_id,
                    channel_values[self.channel_keys[i]],
                    data.external_id,
                    buyer_value,
                    data.currency,
                    data.ordered_at,
                    data.delivered_at,
                    ship_to_country,
                    shipping,
                    shipping_tax,
                    captured,
                    data.payment_reference,
                    now,
                    now,
                )
                lines: list[str] = []
                for position, line in enumerate(data.lines):
                    product = product_ids.get(line.sku)
                    if product is None:
                        stored_id, stored_title = products[line.sku]
                        product = product_ids[line.sku] = (value(stored_id), stored_title)
                    product_id, title = product
                    unit_price, tax, discount = (
                        minor(line.unit_price),
                        minor(line.tax),
                        minor(line.discount),
                    )
                    line_rows.append(
                        (
                            next(line_ids),
                            org_id,
                            order_id,
                            position,
                            line.external_id,
                            product_id,
                            line.sku,
                            line.title or title,
                            line.quantity,
                            unit_price,
                            tax,
                            discount,
                        )
                    )
                    lines.append(
                        _line_json(
                            discount, line.external_id, line.quantity, line.sku, tax, unit_price
                        )
                    )
                state = _order_json(
                    buyer_id,
                    captured,
                    data.currency,
                    data.delivered_at,
                    data.external_id,
                    lines,
                    data.ordered_at,
                    data.payment_reference,
                    ship_to_country,
                    shipping,
                    shipping_tax,
                )
                states[k] = (order_id, state)  # its text on PostgreSQL

        _insert_tuples(self.session, _ORDERS, _ORDER_COLUMNS, order_rows())
        # The same order.created event upsert_order records, chained from GENESIS without
        # a head lookup: each order id was drawn just now. Recorded in the batch's order.
        audit.record_created(
            self.session,
            self.actor,
            subject_type="order",
            action="order.created",
            created=cast(list[tuple[uuid.UUID | str, JSONText]], states),
        )
        # Lines by order, as their ids were drawn: PostgreSQL checks each line's order
        # (foreign key) and files it in the (order, line id) index in the order of those
        # indexes, touching each page once.
        _insert_tuples(self.session, _LINES, _LINE_COLUMNS, line_rows)
        return ids

    def _update(self, data: OrderIn) -> OrderOutcome:
        try:
            with self.session.begin_nested():
                result = upsert_order(self.session, self.actor, data)
        except ReturnGuardError as exc:
            return _rejected(exc)
        if result.created:
            # Deleted since we looked: upsert_order created it afresh.
            return OrderOutcome(Outcome.CREATED, result.order.id)
        return OrderOutcome(
            Outcome.UPDATED if result.changed else Outcome.UNCHANGED, result.order.id
        )
