"""A small, table-driven state machine: actions move a status along explicit edges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)
A = TypeVar("A", bound=StrEnum)


@dataclass(frozen=True)
class Edge(Generic[S]):
    sources: frozenset[S]
    target: S | None  # None: the action keeps the current status (e.g. a second receipt)


class IllegalTransition(Exception):
    def __init__(self, action: str, current: str, allowed: list[str]) -> None:
        super().__init__(f"cannot {action} a return that is {current}")
        self.action = action
        self.current = current
        self.allowed = allowed


@dataclass(frozen=True)
class StateMachine(Generic[S, A]):
    edges: Mapping[A, Edge[S]]
    terminal: frozenset[S]

    def next_status(self, current: S, action: A) -> S:
        """The status after ``action``; raises IllegalTransition naming what is allowed."""
        edge = self.edges[action]
        if current not in edge.sources:
            raise IllegalTransition(action.value, current.value, self.allowed_actions(current))
        return edge.target if edge.target is not None else current

    def allowed_actions(self, current: S) -> list[str]:
        return [a.value for a, e in self.edges.items() if current in e.sources]

    def allowed_next_statuses(self, current: S) -> list[str]:
        seen: dict[str, None] = {}
        for edge in self.edges.values():
            if current in edge.sources:
                seen[(edge.target or current).value] = None
        return list(seen)
