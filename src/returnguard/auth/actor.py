"""Who is acting. Every event names its actor; every permission check asks it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from returnguard.auth.models import Role
from returnguard.auth.permissions import Permission, allows
from returnguard.errors import Forbidden


@dataclass(frozen=True)
class Actor:
    """Who is acting: recorded on every event. `system` acts for the worker and imports."""

    organization_id: uuid.UUID
    role: str
    actor_type: str  # "api_key" | "user" | "system"
    actor_id: str | None
    label: str

    def require(self, permission: Permission) -> None:
        if not allows(self.role, permission):
            raise Forbidden(f"role {self.role!r} may not {permission.value}")

    @classmethod
    def system(cls, organization_id: uuid.UUID, label: str = "system") -> Actor:
        return cls(organization_id, Role.ADMIN.value, "system", None, label)
