"""The control plane's store: SQL lives here and only here; it speaks pydantic models."""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.store.agents import AgentStore
from control_plane.store.db import Database
from control_plane.store.environments import EnvironmentStore
from control_plane.store.events import EventStore
from control_plane.store.registry import RegistryStore
from control_plane.store.reports import ReportStore
from control_plane.store.tokens import TokenStore


@dataclass
class Store:
    """One connection's view of every table group."""

    db: Database
    registry: RegistryStore
    environments: EnvironmentStore
    tokens: TokenStore
    agents: AgentStore
    reports: ReportStore
    events: EventStore

    @classmethod
    def over(cls, db: Database) -> Store:
        return cls(
            db=db,
            registry=RegistryStore(db),
            environments=EnvironmentStore(db),
            tokens=TokenStore(db),
            agents=AgentStore(db),
            reports=ReportStore(db),
            events=EventStore(db),
        )
