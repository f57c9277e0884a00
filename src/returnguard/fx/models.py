from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from returnguard.kit.db import Base, UTCDateTime, new_id, utcnow


class FxRate(Base):
    """How many units of `quote` one unit of `base` bought on `day` (1 EUR = 1.0856 USD)."""

    __tablename__ = "fx_rates"
    __table_args__ = (UniqueConstraint("organization_id", "day", "base", "quote"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    day: Mapped[date] = mapped_column(Date)
    base: Mapped[str] = mapped_column(String(3))
    quote: Mapped[str] = mapped_column(String(3))
    # The exact decimal text: rates carry more digits than any float keeps faithfully.
    rate: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16), default="manual")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
