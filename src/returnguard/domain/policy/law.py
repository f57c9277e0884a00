"""Legal floors per buyer country: the minimum a policy may offer, whatever it says.

Sources: EU Consumer Rights Directive 2011/83/EU (art. 9, 13, 14) and the legal
guarantee of Directive (EU) 2019/771 (art. 10); UK Consumer Contracts Regulations 2013
(reg. 29-34) and Consumer Rights Act 2015 (s. 22, short-term right to reject); Japan's
Act on Specified Commercial Transactions (art. 15-3: 8 days when no policy is stated).
"""

from __future__ import annotations

from dataclasses import dataclass

EU_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    ]
)
EEA_EXTRA = frozenset({"IS", "LI", "NO"})


@dataclass(frozen=True)
class Floor:
    region: str
    countries: frozenset[str]
    law: str
    withdrawal_days: int | None
    """No-fault returns may not be refused within this many days of delivery."""
    outbound_shipping_refunded: bool
    """On withdrawal the refund includes the standard outbound delivery."""
    no_flat_fee_on_withdrawal: bool
    """Only loss of value from handling may be deducted, not a flat restocking fee."""
    guarantee_days: int | None
    """Seller-fault returns may not be refused within this many days of delivery."""
    guarantee_law: str
    default_window_days: int | None = None
    """Applies only where the policy states no window at all (Japan)."""


FLOORS: tuple[Floor, ...] = (
    Floor(
        region="EU/EEA",
        countries=EU_COUNTRIES | EEA_EXTRA,
        law="Directive 2011/83/EU art. 9 (14-day right of withdrawal)",
        withdrawal_days=14,
        outbound_shipping_refunded=True,
        no_flat_fee_on_withdrawal=True,
        guarantee_days=730,
        guarantee_law="Directive (EU) 2019/771 art. 10 (2-year legal guarantee)",
    ),
    Floor(
        region="UK",
        countries=frozenset({"GB"}),
        law="Consumer Contracts Regulations 2013 reg. 29-30 (14-day cancellation)",
        withdrawal_days=14,
        outbound_shipping_refunded=True,
        no_flat_fee_on_withdrawal=True,
        guarantee_days=30,
        guarantee_law="Consumer Rights Act 2015 s. 22 (30-day short-term right to reject)",
    ),
    Floor(
        region="JP",
        countries=frozenset({"JP"}),
        law="Act on Specified Commercial Transactions art. 15-3 (8 days if no policy stated)",
        withdrawal_days=None,
        outbound_shipping_refunded=False,
        no_flat_fee_on_withdrawal=False,
        guarantee_days=None,
        guarantee_law="",
        default_window_days=8,
    ),
)

_BY_COUNTRY: dict[str, Floor] = {c: f for f in FLOORS for c in f.countries}


def floor_for(country: str | None) -> Floor | None:
    return _BY_COUNTRY.get(country) if country else None
