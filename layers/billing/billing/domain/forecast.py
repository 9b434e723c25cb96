"""What accrues while nothing is deducted, from aggregates: the hourly burn, the usage accrued since
the last deductions, and when the account next needs a check (running out, the low-credit mail).

Each container's open accruals are a summable :class:`~billing.domain.model.Accrual`; the balance
keeps their sum. Accrued usage is then the sum over groups of rate × (count × t - Σ billed-until),
priced exactly and rounded once (the deductions themselves are rounded per line, so the two may
differ by less than a µcr per line; rates are those in effect at ``t``). Nothing here reads a
container.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.domain.amounts import GIB, to_micro
from billing.domain.catalog import PriceCatalog
from billing.domain.clock import month_start_of_key
from billing.domain.model import AccountState, Accrual, Container

CS = "+cs"


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def contribution(catalog: PriceCatalog, c: Container) -> Accrual:
    """The container's open accruals as of its facts: running runs, billable storage under each
    plan's allowance (active and not deleted), reported traffic not yet deducted."""
    runs: dict[str, list[int]] = {}
    users: dict[str, list[int]] = {}
    traffic = 0
    for run in c.runs.values():
        if run.is_running and run.tier is not None:
            key = run.tier + (CS if run.code_supporter else "")
            since = _epoch(run.billed_until or run.started_at)  # type: ignore[arg-type]
            for groups, name in ((runs, key), (users, f"{key}@{run.user_id}" if run.user_id else None)):
                if name is not None:
                    group = groups.setdefault(name, [0, 0])
                    group[0] += 1
                    group[1] += since
        for month, billable in run.pending_billable.items():
            rate = catalog.at(month_start_of_key(month)).traffic_credits_per_gb
            traffic += to_micro(rate * Decimal(billable) / GIB)
    storage: dict[str, list[int]] = {}
    if c.created_at is not None and c.deleted_at is None and c.sizes:
        latest = max([at for at, _ in c.sizes] + [at for at, _ in c.activity] + [c.created_at])
        if c.active_at(latest):
            size = c.size_at(latest)
            since = _epoch(c.storage_billed_until or c.created_at)
            version = catalog.at(latest)
            for plan in version.free_storage_gb:
                gb = max(0, size - version.free_storage(plan))
                if gb:
                    storage[plan] = [gb, gb * since]
    return Accrual(runs=runs, storage=storage, traffic=traffic, users=users)


def _rates(catalog: PriceCatalog, at: datetime, key: str) -> Decimal:
    version = catalog.at(at)
    tier = key.removesuffix(CS)
    rate = version.tier(tier).credits_per_hour
    return rate + version.code_supporter_rate(tier) if key.endswith(CS) else rate


def accrued(state: AccountState, catalog: PriceCatalog, at: datetime) -> int:
    """µcr accrued by the account's containers and not deducted yet, as of ``at``."""
    t = _epoch(at)
    total = Decimal(0)
    for key, (count, since) in state.accrual.runs.items():
        total += _rates(catalog, at, key) * Decimal(count * t - since) / 3600
    plan = state.plan_at(at)
    if plan in state.accrual.storage:
        gb, since = state.accrual.storage[plan]
        total += catalog.at(at).storage_credits_per_gb_hour * Decimal(gb * t - since) / 3600
    return to_micro(total) + state.accrual.traffic


def member_runs(state: AccountState, user_id: str) -> dict[str, list[int]]:
    """The running runs of one member, by ``<tier>[+cs]`` (tier names hold no ``@``; user ids may)."""
    out: dict[str, list[int]] = {}
    for name, group in state.accrual.users.items():
        key, _, user = name.partition("@")
        if user == user_id:
            out[key] = group
    return out


def member_accrued(state: AccountState, catalog: PriceCatalog, user_id: str, at: datetime) -> int:
    """µcr the member's running containers accrued and not deducted yet, as of ``at``."""
    t = _epoch(at)
    total = sum((_rates(catalog, at, key) * Decimal(count * t - since) / 3600
                 for key, (count, since) in member_runs(state, user_id).items()), Decimal(0))
    return to_micro(total)


def member_burn(state: AccountState, catalog: PriceCatalog, user_id: str, at: datetime) -> int:
    """µcr per hour of the member's running containers."""
    runs = member_runs(state, user_id)
    return to_micro(sum((_rates(catalog, at, key) * count for key, (count, _) in runs.items()), Decimal(0)))


def hourly_burn(state: AccountState, catalog: PriceCatalog, at: datetime) -> int:
    """µcr per hour: running containers (tier + Code Supporter) and billable storage."""
    total = sum((_rates(catalog, at, key) * count for key, (count, _) in state.accrual.runs.items()), Decimal(0))
    gb = state.accrual.storage.get(state.plan_at(at), [0, 0])[0]
    return to_micro(total + catalog.at(at).storage_credits_per_gb_hour * gb)


def settled_at(accrual: Accrual, moment: datetime) -> Accrual:
    """The aggregate as if every container had just been billed up to ``moment`` (a projection)."""
    t = _epoch(moment)
    return Accrual(
        runs={k: [count, count * t] for k, (count, _) in accrual.runs.items()},
        users={k: [count, count * t] for k, (count, _) in accrual.users.items()},
        storage={p: [gb, gb * t] for p, (gb, _) in accrual.storage.items()},
    )


def when_remaining_reaches(state: AccountState, catalog: PriceCatalog, at: datetime, level: int) -> datetime | None:
    """When remaining credits (available - accrued) fall to ``level`` µcr at the current burn; ``at``
    when they are there already, None without a burn."""
    burn = hourly_burn(state, catalog, at)
    if burn <= 0:
        return None
    remaining = state.available(at) - accrued(state, catalog, at)
    if remaining <= level:
        return at
    seconds = math.ceil((remaining - level) * 3600 / burn)
    return at + timedelta(seconds=seconds)


def next_check(state: AccountState, catalog: PriceCatalog) -> datetime | None:
    """When the account next needs looking at without any event, at the current burn: running usage
    reaching the balance (overuse); remaining credits below one hour of burn (the cycle's low-credit
    mail), below an armed alert's threshold or hours, below auto top-up's threshold; the month's
    charges and running usage reaching the spend cap."""
    at = state.as_of
    burn = hourly_burn(state, catalog, at)
    if burn <= 0:
        return None
    levels: list[int] = []  # remaining credits (µcr) at which a check is due
    if not state.exhausted and state.accrual.running:
        levels.append(0)
    if state.credit_mail and state.mail_sent_cycle != state.mail_cycle:
        levels.append(burn - 1)
    for rule in state.alerts:
        if rule.armed and rule.kind == "remaining_below":
            levels.append(int(Decimal(rule.threshold) * 1_000_000) - 1)
        elif rule.armed and rule.kind == "hours_left_below":
            levels.append(int(Decimal(rule.threshold) * burn) - 1)
    auto = state.auto_top_up
    if auto and auto.enabled and not auto.pending:
        levels.append(auto.below - 1)
    due = [t for level in levels if (t := when_remaining_reaches(state, catalog, at, level))]
    if state.spend_cap is not None and state.cap_reached != at.strftime("%Y-%m"):
        room = state.spend_cap - state.month_charged.get(at.strftime("%Y-%m"), 0) - accrued(state, catalog, at)
        due.append(at + timedelta(seconds=max(0, math.ceil(room * 3600 / burn))))
    month = at.strftime("%Y-%m")
    for member in state.members.values():  # member limits: the member's running usage reaching it
        if member.monthly_limit is None or member.limit_reached == month:
            continue
        member_rate = member_burn(state, catalog, member.user_id, at)
        if member_rate > 0:
            spent = state.spent_by(member.user_id, month)
            room = member.monthly_limit - spent - member_accrued(state, catalog, member.user_id, at)
            due.append(at + timedelta(seconds=max(0, math.ceil(room * 3600 / member_rate))))
    return min(due).astimezone(UTC) if due else None
