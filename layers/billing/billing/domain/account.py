"""An account as a change sees it: its balance item, and the containers the change works with.

Containers are records of their own. A change loads only the containers it needs: a container's
events touch that container; an account-wide settlement (a month boundary, running out, a plan
change) needs every container, which the balance lists while they are few (:data:`LISTED`).
Beyond that, account-wide settlements go through the containers with open accruals in chunks (the
work queue), and each container settles what is left when it is next touched.

:meth:`Containers.sync` keeps the balance's aggregates (the containers' count, their open accruals,
the list) in step with the containers a change touched, before the change is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from billing.domain import forecast
from billing.domain.catalog import PriceCatalog
from billing.domain.model import AccountState, Container, to_json

LISTED = 20  # containers listed on the balance (and settled with account-wide changes)
CLOSED_RUN_MEMORY = timedelta(days=3)  # late events arrive within 24 h; keep a margin
DELETED_KEPT = timedelta(days=40)  # a deleted container's item is kept this long (TTL)

ContainerLoader = Callable[[list[str]], dict[str, Container]]


def _no_loader(ids: list[str]) -> dict[str, Container]:
    return {}


@dataclass
class Containers:
    """The account's containers loaded for one change (``loader`` reads more on demand)."""

    loader: ContainerLoader = _no_loader
    loaded: dict[str, Container] = field(default_factory=dict)
    _saved: dict[str, str] = field(default_factory=dict)  # container id -> JSON as loaded

    def __post_init__(self) -> None:
        self._saved = {cid: to_json(c) for cid, c in self.loaded.items()}

    def _load(self, ids: list[str]) -> None:
        missing = [cid for cid in ids if cid not in self.loaded]
        if missing:
            found = self.loader(missing)
            for cid, c in found.items():
                self.loaded[cid] = c
                self._saved[cid] = to_json(c)

    def mark_unsaved(self) -> None:
        """Every loaded container is to be written (they were not items of their own before)."""
        self._saved = {}

    def get(self, container_id: str) -> Container:
        """The container (created on its first event, whatever that event is)."""
        self._load([container_id])
        if container_id not in self.loaded:
            self.loaded[container_id] = Container(container_id=container_id)
        return self.loaded[container_id]

    def reachable(self, state: AccountState) -> list[Container]:
        """The containers this change can settle account-wide: every container while the balance
        lists them, else only those loaded (see :meth:`complete`)."""
        if state.container_ids is not None:
            self._load(state.container_ids)
        return list(self.loaded.values())

    @staticmethod
    def complete(state: AccountState) -> bool:
        """Whether :meth:`reachable` covers every container of the account."""
        return state.container_ids is not None

    def sync(self, state: AccountState, catalog: PriceCatalog, now: datetime) -> list[Container]:
        """Bring the balance's aggregates in step with the loaded containers (idempotent); returns
        the containers whose records changed since they were loaded (to be written)."""
        changed = []
        for c in self.loaded.values():
            c.closed_runs = {r: t for r, t in c.closed_runs.items() if t >= now - CLOSED_RUN_MEMORY}
            contribution = forecast.contribution(catalog, c)
            state.accrual = state.accrual.plus(contribution).plus(c.accrual, sign=-1)
            c.accrual = contribution
            counted = c.created_at is not None and c.deleted_at is None
            state.containers_count += int(counted) - int(c.counted)
            c.counted = counted
            if state.container_ids is not None:
                ids = [i for i in state.container_ids if i != c.container_id]
                if counted or c.runs or not contribution.empty:  # not a container deleted and done
                    ids.append(c.container_id)
                state.container_ids = sorted(ids) if len(ids) <= LISTED else None
        for c in self.loaded.values():
            if to_json(c) != self._saved.get(c.container_id):
                changed.append(c)
        return changed


@dataclass
class Account:
    """An account as a change sees it: the balance item and the containers the change works with."""

    state: AccountState
    containers: Containers = field(default_factory=Containers)
