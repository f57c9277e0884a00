"""The tables behind report rollups (see ledger/rollups.py, migrations 0012 and 0014)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from returnguard.kit.db import Base, UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")


class ReportRollup(Base):
    """What one channel and SKU contributed to net profit on one day (``monthly`` false)
    or in one month (``monthly`` true, ``period`` its first day), in ``base`` currency.

    The row with no SKU counts what could not be converted (``missing_rates``) and nothing
    else. Written by the worker only, a month at a time; never by a request.
    """

    __tablename__ = "report_rollups"
    __table_args__ = (
        Index("ix_report_rollups_org_period", "organization_id", "monthly", "period"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    base: Mapped[str] = mapped_column(String(3))
    monthly: Mapped[bool]
    period: Mapped[date] = mapped_column(Date)
    channel_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    sku: Mapped[str | None] = mapped_column(String(128), nullable=True)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    revenue: Mapped[int] = mapped_column(BigInteger)
    cost_of_goods: Mapped[int] = mapped_column(BigInteger)
    refunds: Mapped[int] = mapped_column(BigInteger)
    return_costs: Mapped[int] = mapped_column(BigInteger)
    recoveries: Mapped[int] = mapped_column(BigInteger)
    missing_units: Mapped[int] = mapped_column(BigInteger)
    missing_rates: Mapped[int] = mapped_column(BigInteger)


class ReportRollupMonth(Base):
    """A month whose rollups (every day of it, and the month) are built, in ``base``."""

    __tablename__ = "report_rollup_months"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    base: Mapped[str] = mapped_column(String(3))
    built_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReportDirty(Base):
    """Days whose facts changed after their rollups were built, appended by triggers on
    the tables reports read (migration 0012); the worker rebuilds and deletes them."""

    __tablename__ = "report_dirty"
    __table_args__ = (
        Index("ix_report_dirty_organization_id", "organization_id", "first_day", "last_day"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    organization_id: Mapped[uuid.UUID]
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)


class ReserveRollup(Base):
    """What the return-risk reserve reads, rolled up (migration 0014), in ``base`` currency.

    Units rows (``entry_period`` NULL): per order day (``period``) and SKU, the units sold
    and the units approved on returns still going ahead. Ledger rows: per entry day
    (``entry_period``), order day and SKU, the converted ledger of those returns, split
    over their lines; the row with no SKU counts the entries without a rate. Monthly rows
    (``monthly`` true) hold the same per month (both days their month's first). Written by
    the worker only, with the net-profit rollups of the same month.
    """

    __tablename__ = "reserve_rollups"
    __table_args__ = (
        Index("ix_reserve_rollups_org_period", "organization_id", "monthly", "period"),
        Index("ix_reserve_rollups_org_entry_period", "organization_id", "entry_period"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    base: Mapped[str] = mapped_column(String(3))
    monthly: Mapped[bool]
    period: Mapped[date] = mapped_column(Date)
    entry_period: Mapped[date | None] = mapped_column(Date, nullable=True)
    sku: Mapped[str | None] = mapped_column(String(128), nullable=True)
    units_sold: Mapped[int] = mapped_column(BigInteger)
    units_returned: Mapped[int] = mapped_column(BigInteger)
    ledger: Mapped[int] = mapped_column(BigInteger)
    missing_rates: Mapped[int] = mapped_column(BigInteger)
