"""The read side of the credit-usage page: balance, monthly usage, container log, AI log, audit log.

Nothing here writes. The balance is computed at the wall clock by rolling a copy of the account's
state in memory (month boundaries, expiries, the new month's lot), exactly as the next settlement
would. The monthly usage report reads only the account's state and one month aggregate item
(``USAGE#YYYY-MM`` or ``USAGE#YYYY-MM#C#<container>``): two ``GetItem`` requests whatever the
size of the history. Logs are ``Query`` pages of ledger entries; paging cursors are signed and
bound to the account (:class:`~billing.http.CursorCodec`).

Decisions where the contract is silent (also in the README):
- ``remaining`` may be negative (usage accrued beyond the balance, before the final settlement);
  ``hours_left`` is then 0. ``hours_left`` is null when the burn is 0.
- Usage: ``cumulative`` defaults to false; with ``cumulative=true`` each point's ``amount`` is the
  running total too (``cumulative`` is always the running total). A ``resource`` filter narrows
  ``total``, ``series`` and ``average_daily``; ``by_resource`` always shows all four resources of
  the scope (account, or the container with ``container_id``). With ``unit=usd`` every figure is
  converted on its own (rounded once, half-up, to the cent), so converted parts need not add up to
  the converted total to the cent.
- ``average_daily`` = total / days elapsed (rounded half-up to a µcr); ``projected_run_out`` =
  now + remaining / average_daily (whole seconds, rounded down); now when nothing remains; null for
  a month other than the current one or a zero average.
- Container log: deduction entries only (not corrections), lines of container time, Code Supporter,
  storage and traffic (AI lines are in the AI log); one row per (entry, container, run): a storage
  line has no run, so it is a row of its own with ``run_id`` null and ``seconds`` null
  (``storage_seconds`` gives the storage interval).
- Audit log: oldest first; ``from`` / ``to`` take a date (``to`` then means the end of that day) or
  a time; without them the log is the whole history. CSV returns the
  whole range (at most ``CSV_MAX_ROWS`` rows; beyond that the ``X-Next-Cursor`` header continues),
  or one page when ``limit`` is given.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, Field
from pynamodb.exceptions import DoesNotExist

from billing.amounts import cents_of_micro, format_credits, hours_left
from billing.burn_down import burn_order
from billing.clock import Clock, format_time, month_key, next_month_start, parse_time, utc_now
from billing.engine import Book
from billing.errors import InvalidInput, UnknownAccount
from billing.http import CursorCodec
from billing.ledger import Ledger, account_pk, day_attr
from billing.model import RESOURCES, AccountState, ChargeLine, LedgerEntry, Resource, from_json
from billing.views import lot_view, time_or_none

CSV_MAX_ROWS = 10_000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_LIMIT = 50
AI_TYPES = {"chat": "Chat", "snap": "Snap", "ai_supporter": "AI Supporter"}
CSV_COLUMNS = ("entry_id", "type", "amount", "at", "reason", "event_id", "lot_id", "paid_by", "lines")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Unit = Literal["credits", "usd"]


# ---------------------------------------------------------------------- response models


class Money(BaseModel):
    currency: str = "USD"
    cents: int


Amount = str | Money


class LotView(BaseModel):
    lot_id: str
    kind: str
    granted: str
    remaining: str
    granted_at: str
    expires_at: str | None


class Expiration(BaseModel):
    lot_id: str
    kind: str
    amount: str
    expires_at: str


class BalanceView(BaseModel):
    account_id: str
    plan: str
    available: str
    free: str
    purchased: str
    debt: str
    exhausted: bool
    credit_mail: bool
    accrued: str
    remaining: str
    hourly_burn: str
    hours_left: float | None
    next_monthly_grant_at: str
    lots: list[LotView]
    upcoming_expirations: list[Expiration]
    credit_price_usd: str
    at: str


class SeriesPoint(BaseModel):
    date: str
    amount: Amount
    cumulative: Amount


class ByResource(BaseModel):
    container: Amount
    storage: Amount
    traffic: Amount
    ai: Amount


class UsageView(BaseModel):
    account_id: str
    month: str
    unit: Unit
    granularity: Literal["day"] = "day"
    cumulative_mode: bool
    resource: Resource | None
    container_id: str | None
    total: Amount
    by_resource: ByResource
    series: list[SeriesPoint]
    days_elapsed: int
    average_daily: Amount
    projected_run_out: str | None
    credit_price_usd: str


class ContainerLogEntry(BaseModel):
    container_id: str
    run_id: str | None
    tier: str | None
    seconds: int | None
    code_supporter: bool | None
    storage_gb: int | None  # allocated
    billable_gb: int | None = None  # above the free allowance
    traffic_bytes: int | None
    credits: str
    deducted_at: str
    storage_seconds: int | None = None
    entry_id: str


class ContainerLog(BaseModel):
    date: str
    entries: list[ContainerLogEntry]


class AiLogEntry(BaseModel):
    type: Literal["Chat", "Snap", "AI Supporter"]
    container_id: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    credits: str
    at: str
    entry_id: str


class AiLog(BaseModel):
    entries: list[AiLogEntry]
    next_cursor: str | None


class LotPayment(BaseModel):
    lot_id: str
    amount: str


class LedgerEntryView(BaseModel):
    entry_id: str
    type: str
    amount: str
    at: str
    reason: str
    event_id: str
    lines: list[dict[str, Any]]
    paid_by: list[LotPayment]
    lot_id: str | None = None


class LedgerPage(BaseModel):
    entries: list[LedgerEntryView]
    next_cursor: str | None
    from_: str = Field(serialization_alias="from")
    to: str | None


class LedgerCsv(BaseModel):
    body: str
    next_cursor: str | None


# ---------------------------------------------------------------------- parsing helpers


def parse_month(value: str) -> datetime:
    """``YYYY-MM`` as the first second of that month, or InvalidInput."""
    if not _MONTH.match(value):
        raise InvalidInput("month must be YYYY-MM")
    try:
        return datetime(int(value[:4]), int(value[5:]), 1, tzinfo=UTC)
    except ValueError:
        raise InvalidInput("month must be YYYY-MM") from None


def parse_day(value: str) -> date:
    if not _DAY.match(value):
        raise InvalidInput("date must be YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("date must be YYYY-MM-DD") from None


def parse_bound(value: str, name: str, end_of_day: bool) -> datetime:
    """A date (``YYYY-MM-DD``; as ``to`` the day's last second) or an ISO-8601 UTC time."""
    if _DAY.match(value):
        day = parse_day(value)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + timedelta(days=1, seconds=-1) if end_of_day else moment
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidInput(f"{name} must be YYYY-MM-DD or an ISO-8601 UTC time") from None


def _money_or_credits(micro: int, unit: Unit, price: Decimal) -> Amount:
    return Money(cents=cents_of_micro(micro, price)) if unit == "usd" else format_credits(micro)


def _line_view(line: ChargeLine) -> dict[str, Any]:
    fields = msgspec.structs.asdict(line).items()
    data = {k: v for k, v in fields if v is not None and k not in ("amount", "start", "end")}
    data["amount"] = format_credits(line.amount)
    if line.start:
        data["start"] = format_time(line.start)
    if line.end:
        data["end"] = format_time(line.end)
    return data


def entry_view(entry: LedgerEntry) -> LedgerEntryView:
    return LedgerEntryView(
        entry_id=entry.entry_id,
        type=entry.type,
        amount=format_credits(entry.amount),
        at=format_time(entry.at),
        reason=entry.reason,
        event_id=entry.event_id,
        lines=[_line_view(line) for line in entry.lines],
        paid_by=[LotPayment(lot_id=p.lot_id, amount=format_credits(p.amount)) for p in entry.paid_by],
        lot_id=entry.lot_id,
    )


def _csv_cell(value: str) -> str:
    """Keep spreadsheet formulas out of exported cells."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def ledger_csv(entries: list[LedgerEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        paid_by = ";".join(f"{p.lot_id}:{format_credits(p.amount)}" for p in e.paid_by)
        lines = ";".join(
            f"{ln.resource}:{ln.item}:{ln.container_id or ''}:{format_credits(ln.amount)}" for ln in e.lines
        )
        row = [e.entry_id, e.type, format_credits(e.amount), format_time(e.at), e.reason, e.event_id,
               e.lot_id or "", paid_by, lines]
        writer.writerow([_csv_cell(cell) for cell in row])
    return out.getvalue()


# ---------------------------------------------------------------------- the service


class UsageReports:
    """The usage page's reads for one table. Collaborators are arguments (tests inject a clock)."""

    def __init__(self, ledger: Ledger, cursors: CursorCodec, clock: Clock = utc_now) -> None:
        self.ledger = ledger
        self.cursors = cursors
        self.clock = clock

    # ------------------------------------------------------------ balance

    def _state(self, account_id: str) -> AccountState:
        state = self.ledger.load(account_id)
        if state is None:
            raise UnknownAccount(f"no account {account_id}")
        return state

    def _rolled(self, state: AccountState, now: datetime) -> tuple[Book, datetime]:
        return Book.projection(state, self.ledger.catalog, now)

    def balance(self, account_id: str) -> BalanceView:
        return self.balance_of(self._state(account_id), self.clock())

    def balance_of(self, state: AccountState, now: datetime) -> BalanceView:
        book, at = self._rolled(state, now)
        s = book.state
        open_lots = sorted((lot for lot in s.usable_lots(at) if lot.remaining > 0), key=burn_order)
        free = sum(lot.remaining for lot in open_lots if lot.is_free)
        purchased = sum(lot.remaining for lot in open_lots if not lot.is_free)
        available = free + purchased
        accrued = book.accrued(at)
        remaining = available - accrued
        burn = book.hourly_burn(at)
        expiring = sorted(
            (lot for lot in open_lots if lot.expires_at), key=lambda lot: (lot.expires_at, lot.lot_id)
        )
        return BalanceView(
            account_id=s.account_id,
            plan=s.plan_at(at),
            available=format_credits(available),
            free=format_credits(free),
            purchased=format_credits(purchased),
            debt=format_credits(s.debt),
            exhausted=s.exhausted,
            credit_mail=s.credit_mail,
            accrued=format_credits(accrued),
            remaining=format_credits(remaining),
            hourly_burn=format_credits(burn),
            hours_left=hours_left(remaining, burn),
            next_monthly_grant_at=format_time(next_month_start(at)),
            lots=[LotView.model_validate(lot_view(lot)) for lot in open_lots],
            upcoming_expirations=[
                Expiration(lot_id=lot.lot_id, kind=lot.kind, amount=format_credits(lot.remaining),
                           expires_at=format_time(lot.expires_at))  # type: ignore[arg-type]
                for lot in expiring
            ],
            credit_price_usd=s.credit_price_usd,
            at=format_time(at),
        )

    # ------------------------------------------------------------ monthly usage

    def _aggregate(self, account_id: str, month: str, container_id: str | None) -> dict[str, int]:
        sk = f"USAGE#{month}" + (f"#C#{container_id}" if container_id else "")
        try:
            item = self.ledger.models.Usage.get(account_pk(account_id), sk)
        except DoesNotExist:
            return {}
        values = item.attribute_values
        return {k: int(v) for k, v in values.items() if isinstance(v, int | float | Decimal)}

    def usage(
        self,
        account_id: str,
        month: str | None = None,
        cumulative: bool = False,
        unit: Unit = "credits",
        resource: Resource | None = None,
        container_id: str | None = None,
    ) -> UsageView:
        now = self.clock()
        start = parse_month(month) if month else datetime(now.year, now.month, 1, tzinfo=UTC)
        key = month_key(start)
        state = self._state(account_id)
        agg = self._aggregate(account_id, key, container_id)
        price = Decimal(state.credit_price_usd)

        def conv(micro: int) -> Amount:
            return _money_or_credits(micro, unit, price)

        days_in_month = calendar.monthrange(start.year, start.month)[1]
        current = key == month_key(now)
        if current:
            days = now.day
        elif start < datetime(now.year, now.month, 1, tzinfo=UTC):
            days = days_in_month
        else:
            days = 0  # a future month: nothing has happened yet
        names = [resource] if resource else list(RESOURCES)
        total = agg.get(f"r_{resource}", 0) if resource else agg.get("total", 0)
        series: list[SeriesPoint] = []
        running = 0
        for day in range(1, days + 1):
            amount = sum(agg.get(day_attr(day, r), 0) for r in names)
            running += amount
            series.append(
                SeriesPoint(
                    date=f"{key}-{day:02d}",
                    amount=conv(running if cumulative else amount),
                    cumulative=conv(running),
                )
            )
        average = 0
        if days:
            average = int((Decimal(total) / days).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        projected: str | None = None
        if current and average > 0:
            book, at = self._rolled(state, now)
            remaining = book.remaining(at)
            seconds = (Decimal(max(remaining, 0)) * 86400 / average).to_integral_value(rounding=ROUND_DOWN)
            projected = format_time(now + timedelta(seconds=int(seconds)))
        return UsageView(
            account_id=account_id,
            month=key,
            unit=unit,
            cumulative_mode=cumulative,
            resource=resource,
            container_id=container_id,
            total=conv(total),
            by_resource=ByResource(**{r: conv(agg.get(f"r_{r}", 0)) for r in RESOURCES}),
            series=series,
            days_elapsed=days,
            average_daily=conv(average),
            projected_run_out=projected,
            credit_price_usd=state.credit_price_usd,
        )

    # ------------------------------------------------------------ container log

    def container_log(self, account_id: str, day: str) -> ContainerLog:
        parse_day(day)
        m: Any = self.ledger.models
        lo, hi = f"LEDGER#{day}T00:00:00Z", f"LEDGER#{day}T23:59:59Z~"
        rows: list[ContainerLogEntry] = []
        for item in m.Entry.query(account_pk(account_id), m.Entry.sk.between(lo, hi)):
            if item.entry_type != "deduction":
                continue
            entry = from_json(item.body, LedgerEntry)
            rows.extend(_container_rows(entry))
        return ContainerLog(date=day, entries=rows)

    # ------------------------------------------------------------ AI log

    def ai_log(self, account_id: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> AiLog:
        pk = account_pk(account_id)
        start = self.cursors.decode(account_id, cursor)
        if start is not None:
            _check_key(start, {"pk", "sk", "gsi1pk", "gsi1sk"}, pk)
            if start["gsi1pk"] != f"{pk}#AI" or start["gsi1sk"] != start["sk"]:
                raise InvalidInput("invalid cursor")
        m: Any = self.ledger.models
        items = list(
            m.Entry.ai.query(
                f"{pk}#AI", scan_index_forward=False, limit=limit + 1, page_size=limit + 1,
                last_evaluated_key=_ddb_key(start),
            )
        )
        page, more = items[:limit], len(items) > limit
        entries: list[AiLogEntry] = []
        for item in page:
            entry = from_json(item.body, LedgerEntry)
            entries.extend(_ai_rows(entry))
        next_key = None
        if more:
            last = page[-1]
            next_key = {"pk": last.pk, "sk": last.sk, "gsi1pk": last.gsi1pk, "gsi1sk": last.gsi1sk}
        return AiLog(entries=entries, next_cursor=self.cursors.encode(account_id, next_key))

    # ------------------------------------------------------------ audit log

    def _range(self, from_: str | None, to: str | None) -> tuple[datetime, datetime | None]:
        # Without a range the audit log is the whole history (paged), not a guess at a window.
        start = parse_bound(from_, "from", False) if from_ else EARLIEST
        end = parse_bound(to, "to", True) if to else None
        if end is not None and end < start:
            raise InvalidInput("from must not be after to")
        return start, end

    def _ledger_entries(
        self, account_id: str, start: datetime, end: datetime | None, limit: int, cursor: str | None
    ) -> tuple[list[LedgerEntry], str | None]:
        pk = account_pk(account_id)
        lo = f"LEDGER#{format_time(start)}"
        hi = f"LEDGER#{format_time(end)}~" if end else "LEDGER#~"
        key = self.cursors.decode(account_id, cursor)
        if key is not None:
            _check_key(key, {"pk", "sk"}, pk)
            if not lo <= key["sk"] <= hi:
                raise InvalidInput("invalid cursor: it belongs to another range")
        m: Any = self.ledger.models
        items = list(
            m.Entry.query(
                pk, m.Entry.sk.between(lo, hi), limit=limit + 1, page_size=min(limit + 1, 1000),
                last_evaluated_key=_ddb_key(key),
            )
        )
        page, more = items[:limit], len(items) > limit
        next_key = {"pk": page[-1].pk, "sk": page[-1].sk} if more else None
        entries = [from_json(i.body, LedgerEntry) for i in page]
        return entries, self.cursors.encode(account_id, next_key)

    def audit_log(
        self, account_id: str, from_: str | None = None, to: str | None = None,
        limit: int = DEFAULT_LIMIT, cursor: str | None = None,
    ) -> LedgerPage:
        start, end = self._range(from_, to)
        entries, next_cursor = self._ledger_entries(account_id, start, end, limit, cursor)
        return LedgerPage(
            entries=[entry_view(e) for e in entries], next_cursor=next_cursor,
            from_=format_time(start), to=time_or_none(end),
        )

    def audit_csv(
        self, account_id: str, from_: str | None = None, to: str | None = None,
        limit: int | None = None, cursor: str | None = None,
    ) -> LedgerCsv:
        start, end = self._range(from_, to)
        entries, next_cursor = self._ledger_entries(account_id, start, end, limit or CSV_MAX_ROWS, cursor)
        return LedgerCsv(body=ledger_csv(entries), next_cursor=next_cursor)


# ---------------------------------------------------------------------- row builders


def _container_rows(entry: LedgerEntry) -> list[ContainerLogEntry]:
    """One row per container of a deduction: its run's time and features, its storage and traffic,
    and the credits deducted for all of them."""
    groups: dict[str, list[ChargeLine]] = {}
    for line in entry.lines:
        if line.container_id and line.resource != "ai":
            groups.setdefault(line.container_id, []).append(line)
    rows = []
    for container_id, lines in groups.items():
        time_lines = [ln for ln in lines if ln.resource == "container" and ln.item != "code_supporter"]
        run_lines = [ln for ln in lines if ln.resource == "container"]
        storage = [ln for ln in lines if ln.resource == "storage"]
        traffic = [ln for ln in lines if ln.resource == "traffic"]
        run_ids = [ln.run_id for ln in run_lines + traffic if ln.run_id]
        rows.append(
            ContainerLogEntry(
                container_id=container_id,
                run_id=run_ids[0] if run_ids else None,
                tier=run_lines[0].tier if run_lines else None,
                seconds=sum(ln.seconds or 0 for ln in time_lines) if time_lines else None,
                code_supporter=bool(run_lines[0].code_supporter) if run_lines else None,
                storage_gb=storage[-1].storage_gb if storage else None,
                billable_gb=storage[-1].billable_gb if storage else None,
                traffic_bytes=sum(ln.traffic_bytes or 0 for ln in traffic) if traffic else None,
                credits=format_credits(sum(ln.amount for ln in lines)),
                deducted_at=format_time(entry.at),
                storage_seconds=sum(ln.seconds or 0 for ln in storage) if storage else None,
                entry_id=entry.entry_id,
            )
        )
    return rows


def _ai_rows(entry: LedgerEntry) -> list[AiLogEntry]:
    return [
        AiLogEntry(
            type=AI_TYPES[line.item],  # type: ignore[arg-type]
            container_id=line.container_id,
            model=line.model if line.item == "chat" else None,
            input_tokens=line.input_tokens or 0,
            output_tokens=line.output_tokens or 0,
            credits=format_credits(line.amount),
            at=format_time(line.start or entry.at),
            entry_id=entry.entry_id,
        )
        for line in entry.lines
        if line.resource == "ai" and line.item in AI_TYPES
    ]


def _check_key(key: dict[str, Any], names: set[str], pk: str) -> None:
    if set(key) != names or not all(isinstance(v, str) for v in key.values()) or key["pk"] != pk:
        raise InvalidInput("invalid cursor")
    if not key["sk"].startswith("LEDGER#"):
        raise InvalidInput("invalid cursor")


def _ddb_key(key: dict[str, Any] | None) -> dict[str, dict[str, str]] | None:
    return {name: {"S": value} for name, value in key.items()} if key else None

