"""Many orders at once: ``upsert_order`` for a batch, in a few statements per batch.

File imports (CSV now, marketplace reports later) bring orders by the thousand, nearly all
of them new. Writing them one ORM object at a time costs a dozen round trips per order;
here a batch costs a fixed handful of statements, whatever its size:

1. the buyers, products and existing orders of the batch are read in one query each;
2. each order is classified: *new*, *unchanged* (what is stored is exactly what
   ``upsert_order`` would leave behind) or *changed*;
3. new buyers and products are inserted with ``insert_missing`` (race-free, in key
   order; on PostgreSQL through a staging table, one INSERT … SELECT), and only those
   are read back; changed contact details of known buyers are updated in one executemany;
4. new orders and their lines go in as multi-row inserts (COPY on PostgreSQL), each with
   its ``order.created`` event (the same event as ``upsert_order``'s), queued with
   ``audit.record_created``: a new order has no chain yet, so the event log writes those
   events in bulk at commit without looking up or locking their chains' heads;
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
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import any_, bindparam, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput, ReturnGuardError
from returnguard.kit.db import copy_rows, insert_missing, new_ids, utcnow
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

OrderKey = tuple[uuid.UUID, str]  # channel id, the channel's order id
BuyerKey = tuple[uuid.UUID, str]  # channel id, the channel's buyer id


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
    for i, data in enumerate(orders):
        problems = data.problems()
        channel = channels.get(data.channel)
        if problems:
            outcomes[i] = _rejected(
                InvalidInput(
                    "; ".join(f"{p['field']}: {p['message']}" for p in problems), errors=problems
                )
            )
        elif channel is None or channel.organization_id != actor.organization_id:
            outcomes[i] = _rejected(
                UnknownChannel.field("channel", f"no channel with code {data.channel!r}")
            )
        elif (channel.id, data.external_id) in seen:
            repeats.append(i)  # applied after the first, as a second upsert would be
        else:
            seen.add((channel.id, data.external_id))
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


def _insert_rows(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """A multi-row insert of ``rows`` (dicts with the same keys in the same order): on
    PostgreSQL a ``COPY``, several times faster than an executemany of INSERTs; elsewhere
    an executemany (SQLite runs it in-process)."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(table.insert(), rows)
        return
    copy_rows(session, table.name, rows)


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
        self.channel_ids = [channels[o.channel].id for o in orders]
        self.postgresql = session.get_bind().dialect.name == "postgresql"
        self.buyer_keys: list[BuyerKey | None] = [
            (cid, o.buyer.external_id) if o.buyer is not None else None
            for cid, o in zip(self.channel_ids, orders, strict=True)
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
            found = stored.get((self.channel_ids[i], data.external_id))
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
        written = self._write_buyers(contacts, kept)
        self._insert_products([self.orders[i] for i in new], products)
        if new:
            ids = self._insert_orders(new, written, buyer_country, products)
            for i, order_id in zip(new, ids, strict=True):
                outcomes[i] = OrderOutcome(Outcome.CREATED, order_id)
        for i in changed:
            outcomes[i] = self._update(self.orders[i])
        return cast(list[OrderOutcome], outcomes)

    # --- reading ---------------------------------------------------------------------

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
        rows = self.session.execute(
            select(
                Buyer.id,
                Buyer.channel_id,
                Buyer.external_id,
                Buyer.email,
                Buyer.name,
                Buyer.country,
            ).where(
                Buyer.organization_id == self.org_id,
                self._among(Buyer.channel_id, {channel for channel, _ in wanted}),
                self._among(Buyer.external_id, {external for _, external in wanted}),
            )
        )
        for id_, channel_id, external_id, email, name, country in rows:
            if (channel_id, external_id) in wanted:
                contacts[(channel_id, external_id)] = _Contact(id_, email, name, country)
        return contacts

    def _load_products(self, skus: Iterator[str]) -> dict[str, tuple[uuid.UUID, str]]:
        """(id, title) by SKU of the stored products among ``skus``."""
        wanted = set(skus)
        if not wanted:
            return {}
        rows = self.session.execute(
            select(Product.sku, Product.id, Product.title).where(
                Product.organization_id == self.org_id, self._among(Product.sku, wanted)
            )
        )
        return {sku: (id_, title) for sku, id_, title in rows}

    def _load_orders(self) -> dict[OrderKey, _Stored]:
        """The batch's orders that exist already, with their lines: two queries."""
        keys = {(cid, o.external_id) for cid, o in zip(self.channel_ids, self.orders, strict=True)}
        rows = self.session.execute(
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
                self._among(Order.channel_id, {cid for cid, _ in keys}),
                self._among(Order.external_id, {external for _, external in keys}),
            )
        )
        stored: dict[OrderKey, _Stored] = {}
        by_id: dict[uuid.UUID, _Stored] = {}
        for id_, channel_id, external_id, *header in rows:
            if (channel_id, external_id) in keys:
                stored[(channel_id, external_id)] = by_id[id_] = _Stored(id_, tuple(header), [])
        if by_id:
            lines = self.session.execute(
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
        self, stored: dict[BuyerKey, _Contact], orders: list[int]
    ) -> dict[BuyerKey, _Contact]:
        """Insert the buyers ``orders`` name that are new, update the known ones whose
        details they change; the buyers' details as written, with their ids."""
        needed = {key for i in orders if (key := self.buyer_keys[i]) is not None}
        written = self._fold(stored, orders)
        missing = [
            {
                "id": None,
                "organization_id": self.org_id,
                "channel_id": channel_id,
                "external_id": external_id,
                "email": contact.email,
                "name": contact.name,
                "country": contact.country,
            }
            for (channel_id, external_id), contact in written.items()
            if contact.id is None and (channel_id, external_id) in needed
        ]
        if missing:
            for row, id_ in zip(missing, new_ids(len(missing)), strict=True):
                row["id"] = id_
            insert_missing(
                self.session, Buyer, ("organization_id", "channel_id", "external_id"), missing
            )
            # Read back the ids; a concurrent writer may have inserted some of them first,
            # and then its details are the stored ones ours apply to.
            stored = stored | self._load_buyers(
                (cast(uuid.UUID, row["channel_id"]), cast(str, row["external_id"]))
                for row in missing
            )
            written = self._fold(stored, orders)
        changes = [
            {"b_id": c.id, "b_email": c.email, "b_name": c.name, "b_country": c.country}
            for key, c in sorted(written.items(), key=lambda item: str(item[1].id))
            if key in needed and c.id is not None and c.values() != stored[key].values()
        ]
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
        insert_missing(self.session, Product, ("organization_id", "sku"), list(missing.values()))
        products.update(self._load_products(iter(missing)))

    def _insert_orders(
        self,
        new: list[int],
        written: Mapping[BuyerKey, _Contact],
        buyer_country: list[str | None],
        products: Mapping[str, tuple[uuid.UUID, str]],
    ) -> list[uuid.UUID]:
        now = utcnow()
        fresh = iter(new_ids(len(new) + sum(len(self.orders[i].lines) for i in new)))
        org_id = self.org_id
        ids: list[uuid.UUID] = []
        order_rows: list[dict[str, Any]] = []
        line_rows: list[dict[str, Any]] = []
        states: list[tuple[uuid.UUID, dict[str, Any]]] = []
        for i in new:
            data = self.orders[i]
            key = self.buyer_keys[i]
            buyer_id = written[key].id if key is not None else None
            order_id = next(fresh)
            ids.append(order_id)
            row: dict[str, Any] = {
                "id": order_id,
                "organization_id": org_id,
                "channel_id": self.channel_ids[i],
                "external_id": data.external_id,
                "buyer_id": buyer_id,
                "currency": data.currency,
                "ordered_at": data.ordered_at,
                "delivered_at": data.delivered_at,
                "ship_to_country": data.ship_to_country or buyer_country[i],
                "shipping_minor": _minor(data.shipping),
                "shipping_tax_minor": _minor(data.shipping_tax),
                "captured_minor": _minor(data.captured),
                "payment_reference": data.payment_reference,
                "created_at": now,
                "updated_at": now,
            }
            lines: list[dict[str, Any]] = []
            for position, line in enumerate(data.lines):
                product_id, title = products[line.sku]
                lines.append(
                    {
                        "id": next(fresh),
                        "organization_id": org_id,
                        "order_id": order_id,
                        "position": position,
                        "external_id": line.external_id,
                        "product_id": product_id,
                        "sku": line.sku,
                        "title": line.title or title,
                        "quantity": line.quantity,
                        "unit_price_minor": _minor(line.unit_price),
                        "tax_minor": _minor(line.tax),
                        "discount_minor": _minor(line.discount),
                    }
                )
            order_rows.append(row)
            line_rows.extend(lines)
            states.append((order_id, created_state(row, lines)))
        # The same order.created event upsert_order records, chained from GENESIS without
        # a head lookup: each order id was drawn just now.
        audit.record_created(
            self.session, self.actor, subject_type="order", action="order.created", created=states
        )
        # In key order, so two imports of overlapping new orders wait for each other's
        # rows in one order instead of deadlocking.
        channel_names = {row["channel_id"]: str(row["channel_id"]) for row in order_rows}
        order_rows.sort(key=lambda r: (channel_names[r["channel_id"]], r["external_id"]))
        _insert_rows(self.session, _ORDERS, order_rows)
        _insert_rows(self.session, _LINES, line_rows)
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
