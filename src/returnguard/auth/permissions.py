"""Which roles may do what. One table, read by the HTTP layer and the CLI alike."""

from __future__ import annotations

from enum import StrEnum

from returnguard.auth.models import Role


class Permission(StrEnum):
    READ = "read"
    ORDERS_WRITE = "orders:write"
    RETURNS_CREATE = "returns:create"
    RETURNS_DECIDE = "returns:decide"
    RETURNS_SHIP = "returns:ship"
    RETURNS_RECEIVE = "returns:receive"
    RETURNS_INSPECT = "returns:inspect"
    WEBHOOKS_MANAGE = "webhooks:manage"
    KEYS_MANAGE = "keys:manage"
    POLICIES_MANAGE = "policies:manage"
    BUYERS_FLAG = "buyers:flag"
    FX_MANAGE = "fx:manage"
    REFUNDS_CREATE = "refunds:create"
    REFUNDS_SETTLE = "refunds:settle"
    LEDGER_WRITE = "ledger:write"
    REFUNDS_CONFIGURE = "refunds:configure"


_ALL = frozenset(Role)
GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.READ: _ALL,
    Permission.ORDERS_WRITE: frozenset({Role.ADMIN, Role.AGENT}),
    Permission.RETURNS_CREATE: frozenset({Role.ADMIN, Role.AGENT}),
    Permission.RETURNS_DECIDE: frozenset({Role.ADMIN, Role.AGENT}),
    Permission.RETURNS_SHIP: frozenset({Role.ADMIN, Role.AGENT}),
    Permission.RETURNS_RECEIVE: frozenset({Role.ADMIN, Role.AGENT, Role.INSPECTOR}),
    Permission.RETURNS_INSPECT: frozenset({Role.ADMIN, Role.INSPECTOR}),
    Permission.WEBHOOKS_MANAGE: frozenset({Role.ADMIN}),
    Permission.KEYS_MANAGE: frozenset({Role.ADMIN}),
    Permission.POLICIES_MANAGE: frozenset({Role.ADMIN}),
    Permission.BUYERS_FLAG: frozenset({Role.ADMIN, Role.AGENT}),
    Permission.FX_MANAGE: frozenset({Role.ADMIN, Role.FINANCE}),
    Permission.REFUNDS_CREATE: frozenset({Role.ADMIN, Role.AGENT, Role.FINANCE}),
    Permission.REFUNDS_SETTLE: frozenset({Role.ADMIN, Role.FINANCE}),
    Permission.LEDGER_WRITE: frozenset({Role.ADMIN, Role.FINANCE}),
    Permission.REFUNDS_CONFIGURE: frozenset({Role.ADMIN}),
}


def allows(role: str, permission: Permission) -> bool:
    return role in GRANTS[permission]
