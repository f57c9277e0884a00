"""Realistic demo data for `returnguard demo`, created through the real services.

Everything goes through the same use cases the API calls, so the demo has what a
production tenant has: hash-chained events for every change, a cost ledger, users
acting with their roles. One organization, "Demo Outdoor Gear", sells outdoor equipment
on Amazon.de (EUR, buyers across the EU) and in a Shopify store for the US (USD), each
channel with its return label and handling costs; it has a few hundred orders from the
last six months and returns in every lifecycle state that the services can reach today.

The history happens when it would have: each step (an order placed, a return asked,
approved, shipped, received, inspected, refunded) runs with the process clock moved to
its moment in the past (``kit.db.replayed_clock``), so the services stamp events, refunds and ledger
entries with those moments, hash-chained as they were written, and monthly reports and
ages look like a shop's. The demo registers no webhook endpoint: one pointing nowhere
would only grow the outbox; `returnguard demo` prints how to add a real receiver.

The data comes from a fixed-seed ``random.Random``: two loads differ only in ids, keys,
RMA numbers and timestamps (which are relative to now). Loading again into a database
that already holds a complete demo adds nothing and only issues a fresh admin key. The
load is marked complete by a final ``demo.loaded`` event; an interrupted load leaves an
incomplete organization behind, which the next load ignores.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.audit.models import Event
from returnguard.auth import service as auth
from returnguard.auth.models import Organization, Role
from returnguard.auth.service import Actor
from returnguard.domain.reasons import ReasonClass, ReasonCode
from returnguard.domain.returns import ReturnAction, ReturnStatus
from returnguard.fx import service as fx
from returnguard.kit.db import Database, ReplayClock, replayed_clock
from returnguard.kit.schemas import MoneyIn
from returnguard.orders import service as orders
from returnguard.orders.models import Channel, Order, OrderLine
from returnguard.orders.schemas import (
    BuyerIn,
    ChannelIn,
    Marketplace,
    OrderIn,
    OrderLineIn,
    ProductIn,
)
from returnguard.policies import service as policies
from returnguard.refunds import service as refunds
from returnguard.refunds.schemas import RefundIn, RefundLineIn
from returnguard.returns import service as returns
from returnguard.returns.models import Return
from returnguard.returns.schemas import (
    ApproveIn,
    Disposition,
    InspectionIn,
    InspectionLineIn,
    LineQuantityIn,
    OfferIn,
    OfferKind,
    ReceiveIn,
    ReceiveLineIn,
    ReturnIn,
    ReturnLineIn,
    ShipmentIn,
)

DEMO_ORGANIZATION = "Demo Outdoor Gear"
DEMO_SEED = 20_240_917
LOADED_ACTION = "demo.loaded"
ORDER_COUNT = 300
ORDERS_PER_TRANSACTION = 100
# How far back the shop's orders go: long enough for monthly reports and refund ages.
HISTORY_DAYS = 182
CENT = Decimal("0.01")

S = ReturnStatus
R = ReasonCode
T = TypeVar("T")


@dataclass(frozen=True)
class DemoInfo:
    organization_id: uuid.UUID
    api_key: str
    orders: int
    returns: int
    # Channel code -> the id of the policy its returns are decided by (for backtests).
    policies: dict[str, uuid.UUID] = field(default_factory=dict)
    # The day of the oldest order: reports over the demo start here.
    first_day: date | None = None


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    category: str
    cost: str  # EUR, what the seller pays the supplier
    price_eur: str  # Amazon.de price, VAT included
    price_usd: str  # Shopify US price, before sales tax
    hs_code: str
    weight: int  # how often it sells, relative
    title: str
    title_de: str


# SKU (with {size} for each size) | sizes | category | unit cost EUR | price EUR | price USD |
# HS code | relative sales | English title | German title (for Amazon.de)
CATALOGUE = """
TENT-TRAIL2 | - | tents | 118.40 | 279.00 | 299.00 | 63062200 | 5 |
  Trailhead 2 ultralight tent, 2 person | Trailhead 2 Ultraleicht-Zelt, 2 Personen
TENT-BASE4 | - | tents | 187.90 | 449.00 | 479.00 | 63062200 | 2 |
  Basecamp 4 family tent, 4 person | Basecamp 4 Familienzelt, 4 Personen
TENT-BIVY1 | - | tents | 63.50 | 149.00 | 159.00 | 63062200 | 2 |
  Summit bivy shelter, 1 person | Summit Biwakzelt, 1 Person
LAMP-HL400 | - | lighting | 11.40 | 34.95 | 36.99 | 85131000 | 10 |
  Headlamp 400 lm, rechargeable (USB-C) | Stirnlampe 400 lm, wiederaufladbar (USB-C)
LAMP-HL900 | - | lighting | 21.80 | 59.95 | 64.99 | 85131000 | 6 |
  Headlamp 900 lm with red light | Stirnlampe 900 lm mit Rotlicht
LAMP-LANT | - | lighting | 9.20 | 27.95 | 29.99 | 85134000 | 5 |
  Camping lantern 300 lm, USB-C | Campinglaterne 300 lm, USB-C
JKT-STORM-M-{size} | S M L XL | apparel | 52.00 | 189.00 | 199.00 | 62019300 | 4 |
  Stormline 3-layer rain jacket, men's, size {size} |
  Stormline 3-Lagen-Regenjacke, Herren, Größe {size}
JKT-STORM-W-{size} | XS S M L | apparel | 52.00 | 189.00 | 199.00 | 62029300 | 3 |
  Stormline 3-layer rain jacket, women's, size {size} |
  Stormline 3-Lagen-Regenjacke, Damen, Größe {size}
JKT-DOWN-M-{size} | M L XL | apparel | 41.30 | 159.00 | 169.00 | 62014000 | 3 |
  Featherlight down jacket, men's, size {size} | Featherlight Daunenjacke, Herren, Größe {size}
SLP-BAG-3S | - | sleeping | 38.50 | 119.00 | 129.00 | 94043000 | 4 |
  Three-season sleeping bag, comfort -5 °C | Drei-Jahreszeiten-Schlafsack, Komfort -5 °C
SLP-MAT-UL | - | sleeping | 24.10 | 79.95 | 84.99 | 63064000 | 4 |
  Ultralight inflatable sleeping mat, R 4.2 | Ultraleichte aufblasbare Isomatte, R 4,2
PACK-RIDGE45 | - | backpacks | 46.00 | 149.00 | 159.00 | 42029291 | 3 |
  Ridge 45 L trekking backpack | Ridge 45 L Trekkingrucksack
PACK-DAY22 | - | backpacks | 17.50 | 59.95 | 64.99 | 42029291 | 4 |
  Daypack 22 L with rain cover | Tagesrucksack 22 L mit Regenhülle
COOK-STOVE | - | cooking | 14.20 | 44.95 | 47.99 | 73211100 | 4 |
  Compact gas stove with piezo igniter | Kompakter Gaskocher mit Piezozündung
COOK-POT-TI | - | cooking | 12.80 | 39.95 | 42.99 | 81089050 | 3 |
  Titanium pot 750 ml | Titantopf 750 ml
POLE-CARBON | - | accessories | 23.00 | 89.95 | 94.99 | 66020000 | 3 |
  Carbon trekking poles, pair | Carbon-Trekkingstöcke, Paar
H2O-FILTER | - | accessories | 11.00 | 34.95 | 37.99 | 84212100 | 4 |
  Squeeze water filter 0.1 µm | Quetsch-Wasserfilter 0,1 µm
"""


def _records(table: str) -> list[list[str]]:
    """Rows of a `|`-separated table; a row continues on the following indented lines."""
    rows: list[str] = []
    for line in table.strip().splitlines():
        if line.startswith(" "):
            rows[-1] += " " + line.strip()
        else:
            rows.append(line.strip())
    return [[cell.strip() for cell in row.split("|")] for row in rows]


def _catalogue() -> list[DemoProduct]:
    """The products, one per size."""
    products: list[DemoProduct] = []
    for record in _records(CATALOGUE):
        sku, sizes, category, cost, eur, usd, hs, weight, title, title_de = record
        for size in sizes.split() if sizes != "-" else [""]:
            products.append(
                DemoProduct(
                    sku.format(size=size),
                    category,
                    cost,
                    eur,
                    usd,
                    hs,
                    int(weight),
                    title.format(size=size),
                    title_de.format(size=size),
                )
            )
    return products


# ------------------------------------------------------------------------------ buyers

# Buyer country | VAT rate (destination VAT, EU one-stop shop) | share of buyers |
# first names | surnames
EU_MARKETS = """
DE | 19 | 60 | Julia Lukas Anna Felix Sophie Jonas Lena Tobias Katrin Moritz Sabine Jan |
  Müller Schmidt Schneider Fischer Weber Becker Hoffmann Wagner Schäfer Krüger Neumann Zimmermann
AT | 20 | 12 | Florian Magdalena Stefan Theresa Matthias | Gruber Huber Pichler Steiner Moser
FR | 20 | 8 | Camille Julien Léa Nicolas Chloé | Martin Bernard Dubois Lefèvre Moreau
NL | 21 | 7 | Daan Sanne Bram Lotte | Jansen Bakker Visser Smit
IT | 22 | 5 | Giulia Marco Francesca Luca | Rossi Bianchi Romano Colombo
ES | 21 | 4 | Lucía Javier Carmen Pablo | García Fernández López Martínez
BE | 21 | 2 | Lotte Thomas Elise | Peeters Janssens Maes
PL | 23 | 2 | Katarzyna Piotr Agnieszka | Nowak Kowalski Wiśniewski
"""
# US state | sales tax collected (%) | share of buyers. The order model has no state
# field, so the state only shapes the sales tax on the order.
US_STATES = """
CA 7.25 18 | NY 8.875 10 | TX 6.25 10 | WA 6.5 7 | CO 2.9 7 | OR 0 5 | IL 6.25 6 |
MA 6.25 5 | FL 6 8 | UT 6.1 4 | MN 6.875 4 | NC 4.75 4
"""
# first names | surnames
US_NAMES = """
Emily Jacob Madison Ethan Olivia Noah Ava Liam Hannah Tyler Grace Brandon Megan Kevin Rachel |
  Miller Johnson Williams Brown Davis Garcia Rodriguez Wilson Anderson Thompson Nguyen Clark
"""


@dataclass(frozen=True)
class Market:
    region: str  # EU: the buyer's country; US: the state
    tax_rate: Decimal
    share: int
    first_names: tuple[str, ...] = ()
    surnames: tuple[str, ...] = ()


def _eu_markets() -> list[Market]:
    markets = []
    for country, vat, share, firsts, lasts in _records(EU_MARKETS):
        markets.append(
            Market(country, Decimal(vat), int(share), tuple(firsts.split()), tuple(lasts.split()))
        )
    return markets


def _us_states() -> list[Market]:
    states = []
    for item in US_STATES.replace("\n", " ").split("|"):
        state, tax, share = item.split()
        states.append(Market(state, Decimal(tax), int(share)))
    return states


@dataclass
class DemoBuyer:
    data: BuyerIn
    region: str  # EU: country; US: state
    tax_rate: Decimal


# ----------------------------------------------------------------------- return texts

# (reason, category or "*", language) -> buyer comments.
COMMENTS: dict[tuple[ReasonCode, str, str], list[str]] = {
    (R.SIZE_FIT, "*", "de"): [
        "Fällt eine Nummer zu klein aus, an den Schultern viel zu eng.",
        "Ärmel sind zu kurz, ich bräuchte eine Größe größer.",
        "Zu weit geschnitten, passt leider nicht.",
    ],
    (R.SIZE_FIT, "*", "en"): [
        "Runs small. I usually wear this size but it is tight across the shoulders.",
        "Sleeves are too long for me.",
        "Fits too loose around the waist, would like the next size down.",
    ],
    (R.SIZE_FIT, "*", "fr"): ["Taille trop petite, je voudrais l'échanger."],
    (R.DEFECTIVE, "lighting", "de"): [
        "Lässt sich nach zwei Tagen nicht mehr aufladen.",
        "Die Lampe flackert im höchsten Modus und geht dann aus.",
    ],
    (R.DEFECTIVE, "lighting", "en"): [
        "Stopped charging after a week of use.",
        "Flickers on high and then shuts off.",
    ],
    (R.DEFECTIVE, "lighting", "fr"): ["La lampe ne s'allume plus après la première charge."],
    (R.DEFECTIVE, "tents", "de"): [
        "Gestängesegment ist beim ersten Aufbau gebrochen.",
        "Die Naht am Außenzelt ist schon beim ersten Regen undicht.",
    ],
    (R.DEFECTIVE, "tents", "en"): [
        "A pole section snapped the first time I pitched it.",
        "Seam on the fly leaks in light rain.",
    ],
    (R.DEFECTIVE, "cooking", "de"): ["Die Piezozündung funktioniert nicht."],
    (R.DEFECTIVE, "cooking", "en"): ["Igniter doesn't spark at all."],
    (R.DEFECTIVE, "apparel", "de"): ["Reißverschluss klemmt und ist nach einer Woche kaputt."],
    (R.DEFECTIVE, "apparel", "en"): ["Zipper pull came off on the second day."],
    (R.DEFECTIVE, "sleeping", "de"): ["Das Ventil verliert über Nacht Luft."],
    (R.DEFECTIVE, "sleeping", "en"): ["Valve leaks, the mat is flat by morning."],
    (R.DEFECTIVE, "*", "de"): ["Nach zwei Touren kaputt.", "Naht hat sich gelöst."],
    (R.DEFECTIVE, "*", "en"): ["Broke on the first trip.", "A seam came apart after two uses."],
    (R.MISSING_PARTS, "tents", "de"): ["Es fehlen die Heringe und der Packsack."],
    (R.MISSING_PARTS, "tents", "en"): ["No stakes in the bag, and the guylines are missing."],
    (R.MISSING_PARTS, "lighting", "de"): ["Ladekabel fehlt im Karton."],
    (R.MISSING_PARTS, "lighting", "en"): ["Charging cable was not in the box."],
    (R.MISSING_PARTS, "*", "de"): ["Teile aus der Anleitung fehlen im Karton."],
    (R.MISSING_PARTS, "*", "en"): ["Parts listed in the manual are missing from the box."],
    (R.DAMAGED_IN_TRANSIT, "*", "de"): [
        "Karton war aufgerissen, der Artikel hat eine Delle.",
        "Paket kam völlig zerdrückt an.",
    ],
    (R.DAMAGED_IN_TRANSIT, "*", "en"): [
        "Box arrived crushed and the item is dented.",
        "Package was torn open on delivery.",
    ],
    (R.NOT_AS_DESCRIBED, "*", "de"): [
        "Die Farbe ist deutlich dunkler als auf den Fotos.",
        "Laut Beschreibung wasserdicht, ist es aber nicht.",
    ],
    (R.NOT_AS_DESCRIBED, "lighting", "en"): ["Nowhere near as bright as the listing claims."],
    (R.NOT_AS_DESCRIBED, "*", "en"): [
        "Color is much darker than in the photos.",
        "Heavier than the weight in the listing.",
    ],
    (R.WRONG_ITEM, "apparel", "de"): ["Falsche Größe geliefert: bestellt M, bekommen L."],
    (R.WRONG_ITEM, "apparel", "en"): ["Received the women's version instead of the men's."],
    (R.WRONG_ITEM, "*", "de"): ["Falscher Artikel geliefert, das ist ein anderes Modell."],
    (R.WRONG_ITEM, "*", "en"): ["Received a different model than the one I ordered."],
    (R.CHANGED_MIND, "*", "de"): [
        "Habe mich für ein anderes Modell entschieden.",
        "Brauche ich doch nicht.",
    ],
    (R.CHANGED_MIND, "*", "en"): [
        "Decided to go with a lighter option.",
        "Don't need it after all.",
    ],
    (R.CHANGED_MIND, "*", "fr"): ["Je n'en ai finalement plus besoin."],
    (R.ORDERED_BY_MISTAKE, "*", "de"): ["Versehentlich doppelt bestellt."],
    (R.ORDERED_BY_MISTAKE, "*", "en"): ["Ordered twice by accident."],
    (R.BETTER_PRICE, "*", "de"): ["Im Laden vor Ort günstiger gefunden."],
    (R.BETTER_PRICE, "*", "en"): ["Found it cheaper at a local store."],
    (R.LATE_DELIVERY, "*", "de"): ["Kam erst nach dem Urlaub an, brauche es nicht mehr."],
    (R.LATE_DELIVERY, "*", "en"): ["Arrived after our trip, no longer needed."],
    (R.OTHER, "*", "de"): ["War ein Geschenk, der Beschenkte hat schon eins."],
    (R.OTHER, "*", "en"): ["It was a gift and they already have one."],
}

# Relative likelihood of each reason per product category ("*": any other category).
REASON_WEIGHTS_TABLE = """
apparel | size_fit 45 changed_mind 12 not_as_described 12 defective 8 wrong_item 8
  ordered_by_mistake 5 better_price 5 other 5
tents | defective 25 missing_parts 15 damaged_in_transit 12 changed_mind 18
  not_as_described 10 late_delivery 6 better_price 6 other 8
lighting | defective 35 not_as_described 15 changed_mind 15 ordered_by_mistake 10
  better_price 10 damaged_in_transit 5 missing_parts 10
* | defective 20 changed_mind 25 not_as_described 10 damaged_in_transit 10
  ordered_by_mistake 10 better_price 10 missing_parts 5 late_delivery 4 other 6
"""
# State a return ends in | how many (80 in all) | days since delivery that fit a return
# that has got that far | days its path takes from the request on. Returns still open
# were asked recently; settled ones spread over the whole history.
RETURN_PLAN_TABLE = """
requested | 8 | 1 20 | 0
awaiting_evidence | 5 | 2 20 | 1
pending_review | 6 | 2 25 | 2
offered | 4 | 3 25 | 1
approved | 7 | 3 25 | 1
in_transit | 6 | 5 30 | 4
received | 5 | 8 40 | 8
inspected | 6 | 10 45 | 10
refunded | 6 | 12 180 | 14
closed | 5 | 15 180 | 16
resolved | 5 | 5 180 | 3
rejected | 4 | 35 180 | 2
cancelled | 4 | 3 180 | 3
expired | 3 | 25 180 | 17
lost | 2 | 25 180 | 22
disputed | 4 | 10 120 | 8
"""
# States in which a return waits for someone now: its last step was not long ago.
OPEN_STATES = frozenset(
    {
        S.REQUESTED,
        S.AWAITING_EVIDENCE,
        S.PENDING_REVIEW,
        S.OFFERED,
        S.APPROVED,
        S.IN_TRANSIT,
        S.RECEIVED,
        S.INSPECTED,
        S.DISPUTED,
    }
)
SELLER_FAULT = frozenset(r for r in ReasonCode if r.reason_class == ReasonClass.SELLER_FAULT)


def _reason_weights() -> dict[str, dict[ReasonCode, int]]:
    weights: dict[str, dict[ReasonCode, int]] = {}
    for category, cell in _records(REASON_WEIGHTS_TABLE):
        words = cell.split()
        pairs = zip(words[::2], words[1::2], strict=True)
        weights[category] = {ReasonCode(reason): int(weight) for reason, weight in pairs}
    return weights


@dataclass(frozen=True)
class PlanItem:
    status: ReturnStatus
    count: int
    delivered_days_ago: tuple[int, int]
    path_days: int


def _return_plan() -> list[PlanItem]:
    plan = []
    for status, count, ages, path in _records(RETURN_PLAN_TABLE):
        low, high = ages.split()
        plan.append(PlanItem(ReturnStatus(status), int(count), (int(low), int(high)), int(path)))
    return plan


# USD per EUR, this month first, then one per month before it.
DEMO_USD_RATES = ("1.0562", "1.0741", "1.0893", "1.0952", "1.0815", "1.0768", "1.0904", "1.1012")
REASON_WEIGHTS = _reason_weights()
RETURN_PLAN = _return_plan()


# ------------------------------------------------------------------------------ helpers


def _money(amount: Decimal, currency: str) -> MoneyIn:
    return MoneyIn(currency=currency, amount=str(amount.quantize(CENT, ROUND_HALF_UP)))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(
    rng: random.Random, n: int, alphabet: str = string.ascii_uppercase + string.digits
) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _weighted(rng: random.Random, options: Sequence[T], weights: Sequence[int]) -> T:
    return rng.choices(list(options), weights=list(weights), k=1)[0]


@dataclass
class Staff:
    system: Actor
    agent_eu: Actor
    agent_us: Actor
    inspector_eu: Actor
    inspector_us: Actor
    finance: Actor

    def agent(self, channel: str) -> Actor:
        return self.agent_eu if channel == "amazon-de" else self.agent_us

    def inspector(self, channel: str) -> Actor:
        return self.inspector_eu if channel == "amazon-de" else self.inspector_us


@dataclass
class PlacedLine:
    id: uuid.UUID
    product: DemoProduct
    quantity: int


@dataclass
class PlacedOrder:
    id: uuid.UUID
    channel: str
    currency: str
    buyer: DemoBuyer
    delivered_days_ago: float | None
    lines: list[PlacedLine] = field(default_factory=list)
    delivered_at: datetime | None = None


# ---------------------------------------------------------------------------- loading


def load_demo(db: Database, *, seed: int = DEMO_SEED, now: datetime | None = None) -> DemoInfo:
    """Load the demo organization (once) and return it with a fresh admin API key."""
    with db.session() as session:
        existing = _existing_demo(session)
        if existing is not None:
            plain = _admin_key(session, existing, "admin (demo, reissued)")
            return _info(session, existing, plain)
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not a secret
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    # The shop opened a little before its first order; the clock then follows its history.
    with replayed_clock(now - timedelta(days=HISTORY_DAYS + 14)) as clock:
        with db.session() as session:
            org = auth.create_organization(session, DEMO_ORGANIZATION, "EUR")
            org_id = org.id
            staff = _setup(session, org_id)
            # Monthly EUR/USD reference rates, so reports in EUR include the US shop.
            for months_back, rate in enumerate(DEMO_USD_RATES):
                fx.set_rate(
                    session,
                    staff.system,
                    day=(now - timedelta(days=30 * months_back)).date(),
                    base="EUR",
                    quote="USD",
                    rate=Decimal(rate),
                    source="demo",
                )
            catalogue = _catalogue()
            for product in catalogue:
                orders.upsert_product(
                    session,
                    staff.system,
                    ProductIn(
                        sku=product.sku,
                        title=product.title,
                        asin="B0" + _alnum(rng, 8),
                        category=product.category,
                        unit_cost=_money(Decimal(product.cost), "EUR"),
                        hs_code=product.hs_code,
                    ),
                )
        placed = _place_orders(db, staff, rng, catalogue, now, clock)
        _create_returns(db, staff, rng, placed, seed, now, clock)
    # The key is issued now, not in the shop's past.
    with db.session() as session:
        plain = _admin_key(session, org_id, "admin (demo)")
        return _info(session, org_id, plain)


def _info(session: Session, org_id: uuid.UUID, api_key: str) -> DemoInfo:
    n_orders, n_returns = _counts(session, org_id)
    channels = list(session.scalars(select(Channel).where(Channel.organization_id == org_id)))
    decided_by = {c.code: policies.policy_for_channel(session, c).policy_id for c in channels}
    first = session.scalar(
        select(func.min(Order.ordered_at)).where(Order.organization_id == org_id)
    )
    return DemoInfo(
        org_id, api_key, n_orders, n_returns, decided_by, first.date() if first else None
    )


def _existing_demo(session: Session) -> uuid.UUID | None:
    return session.scalar(
        select(Organization.id)
        .join(Event, Event.organization_id == Organization.id)
        .where(Organization.name == DEMO_ORGANIZATION, Event.action == LOADED_ACTION)
        .order_by(Organization.created_at)
        .limit(1)
    )


def _counts(session: Session, org_id: uuid.UUID) -> tuple[int, int]:
    n_orders = session.scalar(
        select(func.count()).select_from(Order).where(Order.organization_id == org_id)
    )
    n_returns = session.scalar(
        select(func.count()).select_from(Return).where(Return.organization_id == org_id)
    )
    return int(n_orders or 0), int(n_returns or 0)


def _admin_key(session: Session, org_id: uuid.UUID, name: str) -> str:
    _, plain = auth.create_api_key(
        session, org_id, name=name, role=Role.ADMIN.value, actor=Actor.system(org_id, "demo")
    )
    return plain


def _setup(session: Session, org_id: uuid.UUID) -> Staff:
    system = Actor.system(org_id, "demo")

    def user(email: str, name: str, role: Role) -> Actor:
        u = auth.create_user(session, org_id, email=email, role=role.value, name=name, actor=system)
        return Actor(org_id, u.role, "user", str(u.id), u.email)

    staff = Staff(
        system=system,
        agent_eu=user("lena.kraus@demo-outdoor.example", "Lena Kraus", Role.AGENT),
        agent_us=user("mike.ortega@demo-outdoor.example", "Mike Ortega", Role.AGENT),
        inspector_eu=user(
            "wareneingang.leipzig@demo-outdoor.example", "Lager Leipzig", Role.INSPECTOR
        ),
        inspector_us=user(
            "receiving.reno@demo-outdoor.example", "Returns desk Reno, NV", Role.INSPECTOR
        ),
        finance=user("buchhaltung@demo-outdoor.example", "Jana Vogel", Role.FINANCE),
    )
    # What bringing one parcel back costs each channel: backtests price returnless
    # refunds and return shipping with these.
    orders.create_channel(
        session,
        system,
        ChannelIn(
            code="amazon-de",
            name="Amazon.de",
            marketplace=Marketplace.AMAZON,
            country="DE",
            currency="EUR",
            language="de",
            return_label_cost=MoneyIn(currency="EUR", amount="4.95"),
            handling_cost=MoneyIn(currency="EUR", amount="3.50"),
        ),
    )
    orders.create_channel(
        session,
        system,
        ChannelIn(
            code="shopify-us",
            name="Demo Outdoor Gear US (Shopify)",
            marketplace=Marketplace.SHOPIFY,
            country="US",
            currency="USD",
            language="en",
            return_label_cost=MoneyIn(currency="USD", amount="8.40"),
            handling_cost=MoneyIn(currency="USD", amount="4.25"),
        ),
    )
    # No webhook endpoint: one at an unreachable host only piles up retries in the
    # outbox. `returnguard demo` prints how to subscribe a real receiver.
    return staff


def _buyer_pools(rng: random.Random) -> tuple[list[DemoBuyer], list[DemoBuyer]]:
    """Buyers to draw orders from; smaller than the order count, so some buy again."""
    eu_markets, us_states = _eu_markets(), _us_states()
    [[us_first_names, us_surnames]] = _records(US_NAMES)
    us_first, us_last = us_first_names.split(), us_surnames.split()
    eu: list[DemoBuyer] = []
    for _ in range(140):
        market = _weighted(rng, eu_markets, [m.share for m in eu_markets])
        relay = _alnum(rng, 14, string.ascii_lowercase + string.digits)
        buyer = BuyerIn(
            external_id="A" + _alnum(rng, 13),
            email=f"{relay}@marketplace.amazon.example",
            name=f"{rng.choice(market.first_names)} {rng.choice(market.surnames)}",
            country=market.region,
        )
        eu.append(DemoBuyer(buyer, market.region, market.tax_rate))
    us: list[DemoBuyer] = []
    for _ in range(90):
        state = _weighted(rng, us_states, [m.share for m in us_states])
        first, last = rng.choice(us_first), rng.choice(us_last)
        buyer = BuyerIn(
            external_id="7" + _digits(rng, 12),
            email=f"{first}.{last}{rng.randint(1, 99)}@example.com".lower(),
            name=f"{first} {last}",
            country="US",
        )
        us.append(DemoBuyer(buyer, state.region, state.tax_rate))
    return eu, us


def _order_in(
    rng: random.Random,
    catalogue: list[DemoProduct],
    channel: str,
    external_id: str,
    buyer: DemoBuyer,
    ordered_at: datetime,
    delivered_at: datetime | None,
) -> OrderIn:
    amazon = channel == "amazon-de"
    currency = "EUR" if amazon else "USD"
    n_lines = _weighted(rng, [1, 2, 3], [70, 22, 8])
    products = rng.sample(catalogue, k=n_lines, counts=[p.weight for p in catalogue])
    # Sampling with counts may repeat a SKU; keep each product once.
    products = list({p.sku: p for p in products}.values())
    lines: list[OrderLineIn] = []
    goods = Decimal(0)
    tax_total = Decimal(0)
    coupon = not amazon and rng.random() < 0.15
    for product in products:
        qty = 1
        if product.category in {"lighting", "cooking", "accessories"}:
            qty = _weighted(rng, [1, 2, 3], [80, 17, 3])
        unit = Decimal(product.price_eur if amazon else product.price_usd)
        gross = unit * qty
        discount = (gross * Decimal("0.10")).quantize(CENT, ROUND_HALF_UP) if coupon else None
        net = gross - (discount or 0)
        if amazon:  # EU prices include the destination country's VAT
            tax = (net * buyer.tax_rate / (100 + buyer.tax_rate)).quantize(CENT, ROUND_HALF_UP)
        else:  # US sales tax comes on top
            tax = (net * buyer.tax_rate / 100).quantize(CENT, ROUND_HALF_UP)
        goods += net
        tax_total += tax
        lines.append(
            OrderLineIn(
                external_id=_digits(rng, 14),
                sku=product.sku,
                title=product.title_de if amazon else product.title,
                quantity=qty,
                unit_price=_money(unit, currency),
                # Tax is what comes on top of the price; EU prices already include VAT.
                tax=None if amazon else _money(tax, currency),
                discount=_money(discount, currency) if discount is not None else None,
                category=product.category,
            )
        )
    shipping = Decimal(0)
    if not amazon and goods < 99:
        shipping = Decimal("7.95")
    captured = goods + shipping + (0 if amazon else tax_total)
    return OrderIn(
        channel=channel,
        external_id=external_id,
        currency=currency,
        ordered_at=ordered_at,
        delivered_at=delivered_at,
        buyer=buyer.data,
        ship_to_country=buyer.data.country,
        shipping=_money(shipping, currency) if shipping else None,
        captured=_money(captured, currency),
        lines=lines,
    )


def _place_orders(
    db: Database,
    staff: Staff,
    rng: random.Random,
    catalogue: list[DemoProduct],
    now: datetime,
    clock: ReplayClock,
) -> list[PlacedOrder]:
    eu_buyers, us_buyers = _buyer_pools(rng)
    by_sku = {p.sku: p for p in catalogue}
    seen: set[str] = set()
    shopify_id = 5_912_000_000_000
    specs: list[tuple[OrderIn, DemoBuyer, float | None]] = []
    while len(specs) < ORDER_COUNT:
        amazon = rng.random() < 0.6
        if amazon:
            buyer = rng.choice(eu_buyers)
            prefix = rng.choice(["302", "303", "304", "305", "028"])
            external_id = f"{prefix}-{_digits(rng, 7)}-{_digits(rng, 7)}"
            if external_id in seen:
                continue
            transit = rng.uniform(1, 5 if buyer.region != "DE" else 3)
        else:
            buyer = rng.choice(us_buyers)
            shopify_id += rng.randint(10_000, 900_000)
            external_id = str(shopify_id)
            transit = rng.uniform(2, 7)
        seen.add(external_id)
        if rng.random() < 0.04:  # still on its way to the buyer
            age: float | None = None
            ordered_at = now - timedelta(days=rng.uniform(0.2, 3))
            delivered_at = None
        else:
            age = rng.uniform(0.5, HISTORY_DAYS)
            delivered_at = now - timedelta(days=age)
            ordered_at = delivered_at - timedelta(days=transit)
        specs.append(
            (
                _order_in(
                    rng,
                    catalogue,
                    "amazon-de" if amazon else "shopify-us",
                    external_id,
                    buyer,
                    ordered_at.replace(microsecond=0),
                    delivered_at.replace(microsecond=0) if delivered_at else None,
                ),
                buyer,
                age,
            )
        )
    specs.sort(key=lambda s: s[0].ordered_at)
    placed: list[PlacedOrder] = []
    for start in range(0, len(specs), ORDERS_PER_TRANSACTION):
        with db.session() as session:
            for data, buyer, age in specs[start : start + ORDERS_PER_TRANSACTION]:
                # The channel reports an order a few minutes after it was placed.
                clock.move_to(min(data.ordered_at + timedelta(minutes=rng.uniform(2, 30)), now))
                order = orders.upsert_order(session, staff.system, data).order
                by_ext: dict[str, OrderLine] = {ln.external_id: ln for ln in order.lines}
                placed.append(
                    PlacedOrder(
                        id=order.id,
                        channel=data.channel,
                        currency=data.currency,
                        buyer=buyer,
                        delivered_days_ago=age,
                        delivered_at=data.delivered_at,
                        lines=[
                            PlacedLine(by_ext[ln.external_id].id, by_sku[ln.sku], ln.quantity)
                            for ln in data.lines
                        ],
                    )
                )
    return placed


# ---------------------------------------------------------------------------- returns


def _language(order: PlacedOrder) -> str:
    country = order.buyer.data.country
    if order.channel == "amazon-de" and country in {"DE", "AT"}:
        return "de"
    if country == "FR":
        return "fr"
    return "en"


def _comment(rng: random.Random, reason: ReasonCode, category: str, language: str) -> str:
    for key in (
        (reason, category, language),
        (reason, "*", language),
        (reason, category, "en"),
        (reason, "*", "en"),
    ):
        if key in COMMENTS:
            return rng.choice(COMMENTS[key])
    return ""


def _reason(rng: random.Random, category: str, allowed: frozenset[ReasonCode] | None) -> ReasonCode:
    weights = REASON_WEIGHTS.get(category, REASON_WEIGHTS["*"])
    options = [r for r in weights if allowed is None or r in allowed]
    if not options:
        return rng.choice(sorted(allowed or SELLER_FAULT))
    return _weighted(rng, options, [weights[r] for r in options])


def _pick_order(
    rng: random.Random, candidates: list[PlacedOrder], used: set[uuid.UUID], item: PlanItem
) -> PlacedOrder:
    """An order not yet returned, delivered long enough ago for the return to be this far."""
    low, high = item.delivered_days_ago
    pool = [
        o
        for o in candidates
        if o.id not in used
        and o.delivered_days_ago is not None
        and low <= o.delivered_days_ago <= high
    ]
    if not pool:
        pool = [o for o in candidates if o.id not in used and o.delivered_days_ago is not None]
    order = rng.choice(pool)
    used.add(order.id)
    return order


# Days from the step before to these actions (a range to draw from).
ACTION_DAYS: dict[ReturnAction, tuple[float, float]] = {
    ReturnAction.REQUEST_EVIDENCE: (0.05, 1),
    ReturnAction.SUBMIT_EVIDENCE: (0.3, 3),
    ReturnAction.SEND_TO_REVIEW: (0.05, 1),
    ReturnAction.RESOLVE_RETURNLESS: (0.05, 1.5),
    ReturnAction.EXPIRE: (14, 15),  # the label's validity after approval
    ReturnAction.MARK_LOST: (8, 20),
    ReturnAction.DISPUTE: (2, 15),
    ReturnAction.CLOSE: (1, 5),
}


@dataclass
class Scenario:
    session: Session
    staff: Staff
    rng: random.Random
    order: PlacedOrder
    ret: Return
    clock: ReplayClock
    # The moment of the last step, and the latest a step may happen (the load's now).
    at: datetime
    limit: datetime

    def later(self, low: float, high: float) -> None:
        """Move the clock on by ``low`` to ``high`` days, never past now, never back."""
        base = max(self.at, self.clock.now())  # the replayed clock ticks on
        self.at = min(base + timedelta(days=self.rng.uniform(low, high)), self.limit)
        self.clock.move_to(max(self.at, base))

    @property
    def agent(self) -> Actor:
        return self.staff.agent(self.order.channel)

    @property
    def inspector(self) -> Actor:
        return self.staff.inspector(self.order.channel)

    @property
    def reasons(self) -> list[ReasonCode]:
        return [ReasonCode(ln.reason_code) for ln in self.ret.lines]

    def act(self, action: ReturnAction, reason: str = "", actor: Actor | None = None) -> None:
        self.later(*ACTION_DAYS.get(action, (0.05, 1.5)))
        if action is ReturnAction.RESOLVE_RETURNLESS and not reason:
            # Deciding against the policy needs a reason; an agent would give one.
            reason = "not worth bringing back; refund without the goods"
        self.ret = returns.simple(self.session, actor or self.agent, self.ret.id, action, reason)

    def approve(self, partial: bool = False) -> None:
        self.later(0.05, 1.5)
        lines = None
        note = "checked with the buyer"
        if partial and any(ln.requested > 1 for ln in self.ret.lines):
            lines = [
                LineQuantityIn(return_line_id=ln.id, quantity=max(ln.requested - 1, 1))
                for ln in self.ret.lines
            ]
            note = "one unit fewer approved: the buyer's photos show it was used"
        self.ret = returns.approve(
            self.session, self.agent, self.ret.id, ApproveIn(lines=lines, note=note)
        )

    def offer(self) -> None:
        self.later(0.05, 1.5)
        reasons = set(self.reasons)
        currency = self.order.currency
        if reasons & {R.SIZE_FIT, R.WRONG_ITEM}:
            data = OfferIn(kind=OfferKind.REPLACEMENT, note="exchange for the right size/item")
        elif reasons & SELLER_FAULT:
            pct = self.rng.choice(["15", "20", "25", "30"])
            data = OfferIn(
                kind=OfferKind.KEEP_PARTIAL_REFUND,
                percent=pct,
                note=f"keep the item with a {pct}% refund",
            )
        else:
            value = self.rng.choice(["10.00", "15.00", "20.00"])
            data = OfferIn(
                kind=OfferKind.COUPON,
                amount=MoneyIn(currency=currency, amount=value),
                note="store credit instead of a return",
            )
        self.ret = returns.offer(self.session, self.agent, self.ret.id, data)

    def ship(self) -> None:
        self.later(0.3, 3)  # the buyer prints the label and drops the parcel off
        rng = self.rng
        seller_pays = bool(set(self.reasons) & SELLER_FAULT)
        if self.order.channel == "amazon-de":
            carrier, tracking = rng.choice(["DHL", "DHL", "DPD", "Hermes"]), ""
            if carrier == "DHL":
                tracking = "00340434" + _digits(rng, 12)
            elif carrier == "DPD":
                tracking = "0" + _digits(rng, 13)
            else:
                tracking = "H" + _digits(rng, 19)
            cost = _money(Decimal(rng.choice(["4.19", "4.95", "5.49"])), "EUR")
        else:
            carrier = rng.choice(["UPS", "USPS"])
            if carrier == "UPS":
                tracking = "1Z" + _alnum(rng, 6) + _digits(rng, 10)
            else:
                tracking = "9400" + _digits(rng, 18)
            cost = _money(Decimal(rng.choice(["7.85", "8.40", "11.20"])), "USD")
        self.ret = returns.add_shipment(
            self.session,
            self.staff.system,
            self.ret.id,
            ShipmentIn(
                carrier=carrier,
                tracking_number=tracking,
                label_cost=cost,
                label_paid_by="seller" if seller_pays else "buyer",
            ),
        )

    def receive(self, partial: bool = False) -> None:
        self.later(*((1.5, 5) if self.order.channel == "amazon-de" else (3, 8)))  # in transit
        items = []
        for ln in self.ret.lines:
            outstanding = ln.approved - ln.received
            if outstanding <= 0:
                continue
            qty = outstanding - 1 if partial and outstanding > 1 else outstanding
            items.append(ReceiveLineIn(return_line_id=ln.id, quantity=qty))
        notes = self.rng.choice(
            [
                "",
                "parcel intact",
                "outer box damaged, contents OK",
                "original packaging opened",
            ]
        )
        self.ret = returns.receive(
            self.session, self.inspector, self.ret.id, ReceiveIn(lines=items, notes=notes)
        )

    def inspect(self, fail: bool = False) -> None:
        self.later(0.3, 4)
        items = []
        for ln in self.ret.lines:
            todo = ln.received - ln.inspected
            if todo <= 0:
                continue
            reason = ReasonCode(ln.reason_code)
            disposition: Disposition | None
            if fail:
                passed, grade, disposition = 0, "D", None
                notes = self.rng.choice(
                    [
                        "worn outdoors and dirty, tags removed",
                        "not the item shipped: different colour and batch number",
                        "heavily used, burn mark on the fabric",
                    ]
                )
            elif reason in SELLER_FAULT:
                passed, grade = todo, "C"
                disposition = Disposition.RETURN_TO_SUPPLIER
                notes = "defect confirmed, photos attached"
            else:
                passed, grade = todo, self.rng.choice(["A", "A", "B"])
                disposition = Disposition.RESTOCK if grade == "A" else Disposition.RELABEL
                notes = (
                    "as new, all accessories present" if grade == "A" else "light handling marks"
                )
            items.append(
                InspectionLineIn(
                    return_line_id=ln.id,
                    passed=passed,
                    failed=todo - passed,
                    grade=grade,
                    disposition=disposition,
                    notes=notes,
                )
            )
        self.ret = returns.inspect(
            self.session, self.inspector, self.ret.id, InspectionIn(lines=items)
        )


def _decide(sc: Scenario, partial: bool = False) -> None:
    """Approve, sometimes only after the buyer turned down an alternative."""
    if sc.rng.random() < 0.2:
        sc.offer()
        sc.later(0.3, 3)
        sc.ret = returns.decline_offer(sc.session, sc.staff.system, sc.ret.id)
    else:
        sc.approve(partial)


def _to_state(sc: Scenario, target: ReturnStatus) -> None:
    """Drive a freshly requested return along a realistic path to ``target``."""
    rng, system = sc.rng, sc.staff.system
    if target == S.REQUESTED:
        return
    if target == S.AWAITING_EVIDENCE:
        sc.act(ReturnAction.REQUEST_EVIDENCE, "please upload photos of the defect and the box")
    elif target == S.PENDING_REVIEW:
        if rng.random() < 0.5:
            sc.act(ReturnAction.SEND_TO_REVIEW, "seller-fault claim above the auto-approval limit")
        else:
            sc.act(ReturnAction.REQUEST_EVIDENCE, "please upload photos of the defect")
            sc.act(ReturnAction.SUBMIT_EVIDENCE, "buyer uploaded 3 photos", system)
    elif target == S.OFFERED:
        sc.offer()
    elif target == S.APPROVED:
        _decide(sc, partial=rng.random() < 0.5)
    elif target == S.IN_TRANSIT:
        _decide(sc)
        sc.ship()
        _maybe_refund_at_first_scan(sc)
    elif target == S.RECEIVED:
        _decide(sc)
        if rng.random() < 0.8:  # the others arrive without a registered shipment
            sc.ship()
            _maybe_refund_at_first_scan(sc)
        sc.receive(partial=True)
    elif target == S.INSPECTED:
        _decide(sc)
        sc.ship()
        sc.receive()
        sc.inspect()
    elif target == S.REFUNDED:
        _refunded(sc)
    elif target == S.CLOSED:
        _closed(sc)
    elif target == S.RESOLVED:
        _resolved(sc)
    elif target == S.REJECTED:
        _rejected(sc)
    elif target == S.CANCELLED:
        _cancelled(sc)
    elif target == S.EXPIRED:
        sc.approve()
        sc.act(ReturnAction.EXPIRE, "no parcel handed to the carrier within 14 days", system)
    elif target == S.LOST:
        sc.approve()
        sc.ship()
        # Refunded at the first scan, then lost: money and goods both gone.
        _maybe_refund_at_first_scan(sc)
        sc.act(ReturnAction.MARK_LOST, "carrier reports the parcel lost in its network", system)
    elif target == S.DISPUTED:
        _disputed(sc)
    else:
        raise ValueError(f"the demo cannot reach {target.value}")


def _maybe_refund_at_first_scan(sc: Scenario, chance: float = 0.8) -> None:
    """Amazon refunds some buyers when the carrier first scans the parcel: finance records
    it as an override, and until the goods are back it is money at risk."""
    if sc.order.channel != "amazon-de" or sc.rng.random() >= chance:
        return
    sc.later(0.5, 2)
    lines = [
        RefundLineIn(return_line_id=ln.id, quantity=ln.approved - ln.refunded)
        for ln in sc.ret.lines
        if ln.approved > ln.refunded
    ]
    try:
        refund, _ = refunds.create_refund(
            sc.session,
            sc.staff.finance,
            sc.ret.id,
            f"demo-scan-{sc.ret.id}",
            RefundIn(
                lines=lines,
                reason="refunded by Amazon at first carrier scan",
                override_reason="Amazon refunds at first scan; recorded to match Seller Central",
            ),
        )
    except refunds.RefundRefused:
        return  # a watchlisted buyer or a valuable item: no money before inspection
    sc.later(0.05, 1)
    refunds.settle(
        sc.session, sc.staff.finance, refund.id, paid=True, note="SC-" + _digits(sc.rng, 10)
    )


def _refunded(sc: Scenario) -> None:
    """Inspected, then refunded by finance: most paid (in the ledger), one still pending."""
    _decide(sc)
    sc.ship()
    sc.receive()
    sc.inspect()
    sc.later(0.1, 2)
    lines = [
        RefundLineIn(return_line_id=ln.id, quantity=ln.passed - ln.refunded)
        for ln in sc.ret.lines
        if ln.passed > ln.refunded
    ]
    refund, _ = refunds.create_refund(
        sc.session,
        sc.staff.finance,
        sc.ret.id,
        f"demo-{sc.ret.id}",
        RefundIn(lines=lines, reason="passed inspection"),
    )
    if sc.rng.random() < 0.8:
        sc.later(0.5, 3)  # the provider's payout, confirmed by finance
        reference = "SC-" + _digits(sc.rng, 10) if sc.order.channel == "amazon-de" else None
        refunds.settle(
            sc.session,
            sc.staff.finance,
            refund.id,
            paid=True,
            note=reference or "refunded in Shopify admin #" + _digits(sc.rng, 6),
        )
    sc.ret = returns.get_return(sc.session, sc.staff.system.organization_id, sc.ret.id)


def _closed(sc: Scenario) -> None:
    roll = sc.rng.random()
    sc.approve()
    sc.ship()
    if roll < 0.2:
        sc.act(
            ReturnAction.MARK_LOST,
            "carrier reports the parcel lost in its network",
            sc.staff.system,
        )
        sc.act(ReturnAction.CLOSE, "carrier claim paid out; buyer refunded by the marketplace")
        return
    sc.receive()
    if roll < 0.75:
        sc.inspect(fail=True)
        sc.act(ReturnAction.CLOSE, "no refund due: the inspection failed")
    else:
        sc.inspect()
        sc.act(
            ReturnAction.DISPUTE,
            "buyer opened a chargeback after the inspection",
            sc.staff.system,
        )
        sc.act(ReturnAction.CLOSE, "chargeback decided in the seller's favour")


def _resolved(sc: Scenario) -> None:
    cheap = all(
        Decimal(p.product.price_eur) < 40
        for p in sc.order.lines
        if any(ln.order_line_id == p.id for ln in sc.ret.lines)
    )
    if cheap and sc.rng.random() < 0.7:
        sc.act(
            ReturnAction.RESOLVE_RETURNLESS,
            "returnless refund: the item is worth less than bringing it back",
        )
        return
    sc.offer()
    sc.later(0.3, 3)
    sc.ret = returns.accept_offer(sc.session, sc.staff.system, sc.ret.id)


def _rejected(sc: Scenario) -> None:
    delivered = sc.order.delivered_at or sc.ret.requested_at
    age = (sc.ret.requested_at - delivered).days
    if set(sc.reasons) & SELLER_FAULT:
        if sc.rng.random() < 0.5:
            sc.act(ReturnAction.REQUEST_EVIDENCE, "please upload photos of the defect")
            sc.act(ReturnAction.SUBMIT_EVIDENCE, "buyer uploaded 2 photos", sc.staff.system)
        reason = "photos show damage from use, not a manufacturing defect"
    else:
        reason = f"outside the 30-day return window: asked {age} days after delivery"
    sc.later(0.1, 2)
    sc.ret = returns.reject(sc.session, sc.agent, sc.ret.id, reason)


def _cancelled(sc: Scenario) -> None:
    roll = sc.rng.random()
    if roll < 0.35:
        sc.approve()
    elif roll < 0.55:
        sc.offer()
    reason = (
        "Käufer behält den Artikel"
        if _language(sc.order) == "de"
        else "buyer decided to keep the item"
    )
    sc.later(0.3, 5)
    sc.ret = returns.cancel(sc.session, sc.staff.system, sc.ret.id, reason)


def _disputed(sc: Scenario) -> None:
    roll = sc.rng.random()
    if roll < 0.3:
        claim = "buyer opened a PayPal case before the return was decided"
    elif roll < 0.7:
        sc.approve()
        sc.ship()
        _maybe_refund_at_first_scan(sc)
        claim = (
            "A-to-z guarantee claim opened by the buyer"
            if sc.order.channel == "amazon-de"
            else "chargeback received from the card issuer"
        )
    else:
        sc.approve()
        sc.ship()
        sc.receive()
        claim = "buyer disputes the inspection result"
    sc.act(ReturnAction.DISPUTE, claim, sc.staff.system)


def _request_delay(rng: random.Random, order: PlacedOrder, item: PlanItem) -> float:
    """Days between delivery and the buyer's request: within the return window mostly,
    late for the ones rejected as late, and for returns still open, late enough that
    their last step was recent."""
    age = order.delivered_days_ago or 0.0
    room = max(age - item.path_days, 0.2)  # the latest request whose path fits before now
    if item.status == S.REJECTED:
        return min(rng.uniform(31, max(31.0, min(room, 60))), age)
    if item.status in OPEN_STATES:
        return min(max(room - rng.uniform(0, 3), 0.2), 21, age)
    return min(rng.uniform(0.2, min(room, 21)), age)


def _return_in(rng: random.Random, order: PlacedOrder, item: PlanItem, now: datetime) -> ReturnIn:
    allowed: frozenset[ReasonCode] | None = None
    if item.status in {S.AWAITING_EVIDENCE, S.PENDING_REVIEW}:
        allowed = SELLER_FAULT
    language = _language(order)
    n = 2 if len(order.lines) > 1 and rng.random() < 0.25 else 1
    chosen = rng.sample(order.lines, k=n)
    lines: list[ReturnLineIn] = []
    comments: list[str] = []
    for line in chosen:
        reason = _reason(rng, line.product.category, allowed)
        text = _comment(rng, reason, line.product.category, language)
        comments.append(text)
        quantity = line.quantity if rng.random() < 0.7 else rng.randint(1, line.quantity)
        lines.append(
            ReturnLineIn(
                order_line_id=line.id,
                quantity=quantity,
                reason_code=reason,
                comment=text if n > 1 else "",
            )
        )
    comment = "" if rng.random() < 0.12 else comments[0]
    delivered = order.delivered_at or now
    requested_at = min(delivered + timedelta(days=_request_delay(rng, order, item)), now)
    return ReturnIn(
        order_id=order.id,
        lines=lines,
        buyer_comment=comment,
        requested_at=requested_at.replace(microsecond=0),
    )


def _create_returns(
    db: Database,
    staff: Staff,
    rng: random.Random,
    placed: list[PlacedOrder],
    seed: int,
    now: datetime,
    clock: ReplayClock,
) -> int:
    plan = [item for item in RETURN_PLAN for _ in range(item.count)]
    rng.shuffle(plan)
    used: set[uuid.UUID] = set()
    asked: list[tuple[PlanItem, PlacedOrder, ReturnIn]] = []
    for item in plan:
        order = _pick_order(rng, placed, used, item)
        asked.append((item, order, _return_in(rng, order, item, now)))
    # In the order buyers asked, so the event log reads roughly as the shop lived it.
    asked.sort(key=lambda a: a[2].requested_at or now)
    half = len(asked) // 2
    created = 0
    for batch, last in ((asked[:half], False), (asked[half:], True)):
        with db.session() as session:
            for item, order, data in batch:
                status = item.status
                requested_at = data.requested_at or now
                clock.move_to(requested_at)
                ret = returns.create_return(session, staff.system, data)
                # What the default policy said is recorded with its trace; the scenario
                # then plays what the team did (often the same, sometimes overruled).
                policies.decide(session, staff.system, ret)
                scenario = Scenario(session, staff, rng, order, ret, clock, requested_at, now)
                _to_state(scenario, status)
                if scenario.ret.status != status.value:
                    raise AssertionError(
                        f"demo return meant to end {status.value} is {scenario.ret.status}"
                    )
                created += 1
            if last:
                # Marks the load complete, in the same transaction as its last part.
                clock.move_to(now)
                audit.record(
                    session,
                    staff.system,
                    subject_type="organization",
                    subject_id=staff.system.organization_id,
                    action=LOADED_ACTION,
                    data={"orders": len(placed), "returns": created, "seed": seed},
                )
    return created
