"""Issue 19: usage aggregates whose cost is flat in labels, members and range, through the handlers.

* a stop adds to the same number of small items (4 a cell: the account's day and month, the
  container's day and month) on an account of many labelled containers as on one unlabelled
  container, and no usage item grows with the day's traffic;
* reports read the granularity asked (a day's hours for ``hour``, a month's days otherwise), group by
  container in one query, and refuse with how to narrow them past their bound;
* ``group_by=user`` and ``user=`` read the member attribution; usage without a member is the group ``""``;
* a settlement whose cells pass its transaction's room spills, and the spill is folded right after;
* the previous design's day items are folded into the small items, resumably and exactly once.

Prices (Membership, default catalog): micro 1.96 cr/h; 5 GB of storage per container is free.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from pynamodb.transactions import TransactWrite

from billing.domain.model import ChargeLine, LedgerEntry, to_json
from billing.domain.usage import Cell, days_of
from billing.services import usage as usage_service
from billing.services.reconcile import reconcile
from billing.store import keys, usage, usage_fold
from billing.store.cursors import CursorCodec
from billing.store.ledger import Ledger
from billing.store.usage_reads import item_size
from tests.api_helpers import RequestCounter, api_event, call
from tests.helpers import C, Platform, load_handler

NOW = datetime(2026, 3, 20, tzinfo=UTC)
MICRO_HOUR = 1_960_000  # µcr


def usage_api(ledger: Ledger) -> Any:
    return load_handler("usage_api", ledger=ledger, cursor_codec=CursorCodec("s"), clock=lambda: NOW)


def open_account(ledger: Ledger, account_id: str) -> Platform:
    p = Platform(ledger, account_id)
    p.send("Account Created", "2026-03-01T00:00:00Z", email=f"{account_id}@example.com", plan="membership")
    return p


def one_hour(p: Platform, container: str, day: str, hour: int) -> None:
    start, stop = f"2026-03-{day}T{hour:02d}:00:00Z", f"2026-03-{day}T{hour + 1:02d}:00:00Z"
    p.send("Container Started", start, container_id=container, run_id=f"r-{container}-{day}-{hour}", tier="micro")
    p.send("Container Stopped", stop, container_id=container, run_id=f"r-{container}-{day}-{hour}", traffic_bytes=0)


class UsageWritesSeen:
    """The usage items of each TransactWriteItems the settlement sends (botocore's parameter event)."""

    def __init__(self, ledger: Ledger) -> None:
        self.transactions: list[list[dict[str, Any]]] = []
        ledger.models.connection.client.meta.events.register(
            "provide-client-params.dynamodb.TransactWriteItems", self._seen)

    def _seen(self, params: dict[str, Any], **_: Any) -> None:
        items = [next(iter(i.values())) for i in params["TransactItems"]]  # Put, Update, Delete, ConditionCheck
        self.transactions.append([i for i in items if (i.get("Key") or i["Item"])["sk"]["S"].startswith(keys.USAGE)])


def usage_items(ledger: Ledger, account_id: str) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    out, start = [], None
    while True:
        page = client.query(TableName=ledger.models.table_name,
                            KeyConditionExpression="pk = :pk AND begins_with(sk, :u)",
                            ExpressionAttributeValues={":pk": {"S": keys.account_pk(account_id)},
                                                       ":u": {"S": keys.USAGE}},
                            **({"ExclusiveStartKey": start} if start else {}))
        out += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return out


def test_a_stop_adds_to_as_many_small_items_whatever_the_labels_and_the_days_traffic(ledger: Ledger) -> None:
    plain = open_account(ledger, "acct-plain")
    plain.send("Container Created", "2026-03-01T00:00:00Z", container_id="c0", storage_gb=5)
    labelled = open_account(ledger, "acct-lab")
    for i in range(30):
        labelled.send("Container Created", "2026-03-01T00:00:00Z", container_id=f"c{i}", storage_gb=5,
                      labels={"project": f"p{i}", "team": f"t{i % 7}"})
    seen = UsageWritesSeen(ledger)
    one_hour(plain, "c0", "02", 10)
    plain_stop = seen.transactions[-1]
    sizes = []
    for i in range(30):
        one_hour(labelled, f"c{i}", "02", 10)
        sizes.append(len(seen.transactions[-1]))
    # A micro hour is one cell (storage within the free 5 GB charges nothing): the account's day and
    # month items, the container's day and month items: 4, on the first stop as on the 30th.
    assert len(plain_stop) == 4 and sizes == [4] * 30
    assert all(a["UpdateExpression"].startswith("ADD") or " ADD " in a["UpdateExpression"] for a in plain_stop)
    # Every usage item stays small: the account's day item of hour 10 holds 30 cells' worth of stops
    # as 30 items of one number each, none larger than one write unit (1 KB).
    items = usage_items(ledger, "acct-lab")
    assert max(item_size(i) for i in items) < 1024
    assert len([i for i in items if i["sk"]["S"].startswith("USAGE#A#D#2026-03-02#")]) == 30
    # 30 stops of one micro hour: 30 x 1.96 = 58.80 whatever the items
    status, body, _ = call(usage_api(ledger), api_event("/v1/usage", {"month": "2026-03"}, sub="acct-lab"))
    assert status == 200 and body["total"] == "58.800000"


@pytest.fixture()
def teams(ledger: Ledger) -> Platform:
    """Three containers labelled team=a/b/c. c1 (a): Mar 2 10-11 and Mar 3 10-11; c2 (b): Mar 2 12-13;
    c3 (c): Apr... none (created only). 3 micro hours = 5.88 in March."""
    p = open_account(ledger, "acct-t")
    for cid, team in (("c1", "a"), ("c2", "b"), ("c3", "c")):
        p.send("Container Created", "2026-03-01T00:00:00Z", container_id=cid, storage_gb=5, labels={"team": team})
    one_hour(p, "c1", "02", 10)
    one_hour(p, "c1", "03", 10)
    one_hour(p, "c2", "02", 12)
    return p


def test_each_granularity_reads_its_own_items_in_one_query(teams: Platform) -> None:
    api = usage_api(teams.ledger)
    counter = RequestCounter(teams.ledger.models)
    # by the day over the month: the month items (one per cell: team a, team b), one Query
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "label:team"}, sub="acct-t"))
    assert status == 200 and counter.calls == ["BatchGetItem", "Query"]
    assert [(g["key"], g["total"]) for g in body["groups"]] == [("a", "3.920000"), ("b", "1.960000")]
    # by the hour: the days' items (a's two days, b's one), each run in the hour of its stop's deduction
    counter.reset()
    query = {"from": "2026-03-02", "to": "2026-03-03", "granularity": "hour", "group_by": "label:team"}
    status, body, _ = call(api, api_event("/v1/usage", query, sub="acct-t"))
    assert status == 200 and counter.calls == ["BatchGetItem", "Query"]
    a = next(g for g in body["groups"] if g["key"] == "a")
    assert [p["date"] for p in a["series"] if p["amount"] != "0.000000"] == ["2026-03-02T11", "2026-03-03T11"]
    # grouped by container: one Query of GSI1, whatever the number of containers
    counter.reset()
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "container"}, sub="acct-t"))
    assert status == 200 and counter.calls == ["BatchGetItem", "Query"]
    assert [(g["key"], g["total"]) for g in body["groups"]] == [("c1", "3.920000"), ("c2", "1.960000")]
    # one container by the hour: its own day items
    status, body, _ = call(api, api_event("/v1/usage", {**query, "container_id": "c1", "group_by": "resource"},
                                          sub="acct-t"))
    assert status == 200 and body["total"] == "3.920000"


def test_a_report_past_its_bound_is_a_400_that_says_how_to_narrow_it(
    teams: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By the hour, Mar 2-3 is 3 day items (a's two days, b's one); by the month, 2 month items."""
    monkeypatch.setattr(usage_service, "MAX_ITEMS_READ", 2)
    api = usage_api(teams.ledger)
    query = {"from": "2026-03-02", "to": "2026-03-03", "granularity": "hour"}
    status, body, _ = call(api, api_event("/v1/usage", query, sub="acct-t"))
    assert status == 400 and "more than 2 items" in body["error"]["message"]
    assert "coarser granularity" in body["error"]["message"]
    status, body, _ = call(api, api_event("/v1/usage", {**query, "granularity": "month"}, sub="acct-t"))
    assert status == 200 and body["total"] == "5.880000"


def member_entry(at: str, entry_id: str, *lines: tuple[str | None, int]) -> LedgerEntry:
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    charge = [ChargeLine(resource="ai", item="chat", amount=amount, month="2026-03", model="gpt-5-nano",
                         user_id=user) for user, amount in lines]
    return LedgerEntry(entry_id=entry_id, type="deduction", amount=sum(a for _, a in lines), at=moment,
                       reason="ai", event_id=entry_id, lines=charge)


def add_usage(ledger: Ledger, account_id: str, entries: list[LedgerEntry], room: int = 99) -> usage.UsageWrites:
    """What a settlement's transaction adds for ``entries`` (the aggregates only)."""
    writes = usage.writes(ledger.models, account_id, entries[0].entry_id, entries, room)
    with TransactWrite(connection=ledger.models.connection) as tx:
        for item, actions in writes.updates:
            tx.update(item, actions=actions)
        for spill in writes.spills:
            tx.save(spill)
    return writes


def test_usage_grouped_and_filtered_by_member(ledger: Ledger) -> None:
    """Lines of u1 (3 + 4 cr), u2 (2 cr) and none (1 cr), Mar 2 and 3: by member, and u1 alone."""
    open_account(ledger, "acct-o")
    add_usage(ledger, "acct-o", [member_entry("2026-03-02T10:00:00Z", "e1", ("u1", 3 * C), ("u2", 2 * C))])
    add_usage(ledger, "acct-o", [member_entry("2026-03-03T11:00:00Z", "e2", ("u1", 4 * C), (None, 1 * C))])
    api = usage_api(ledger)
    for path in ("/v1/usage", "/v1/usage.csv"):
        status, body, _ = call(api, api_event(path, {"month": "2026-03", "group_by": "user"}, sub="acct-o"))
        assert status == 200, body
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "user"}, sub="acct-o"))
    # usage without a member is the group "" (as usage without the grouped label is)
    assert [(g["key"], g["total"]) for g in body["groups"]] == [("", "1.000000"), ("u1", "7.000000"),
                                                                ("u2", "2.000000")]
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "user": "u1"}, sub="acct-o"))
    assert status == 200 and body["total"] == "7.000000" and body["filters"] == {"user": "u1"}
    status, text, _ = call(api, api_event("/v1/usage.csv", {"from": "2026-03-02", "to": "2026-03-03",
                                                            "group_by": "user", "user": "u2"}, sub="acct-o"))
    assert status == 200 and text.splitlines()[1:] == ["2026-03-02,u2,2.000000,2.000000",
                                                      "2026-03-03,u2,0.000000,2.000000"]
    status, body, _ = call(api, api_event("/v1/usage", {"user": "\u00e9"}, sub="acct-o"))
    assert status == 400 and "user" in body["error"]["message"]


def test_cells_past_the_transactions_room_spill_and_are_folded_exactly(ledger: Ledger) -> None:
    """An entry of 40 members' lines is 40 cells: 80 account items. With room for 10, 9 items take
    4 cells (8 items: day and month of each) and one spill item the other 36 cells; reports read both,
    the fold moves the spill into the small items, and the totals never change."""
    p = open_account(ledger, "acct-s")
    entry = member_entry("2026-03-02T10:00:00Z", "big", *((f"u{i:02d}", (i + 1) * C) for i in range(40)))
    writes = add_usage(ledger, "acct-s", [entry], room=10)
    assert (len(writes.updates), len(writes.spills), writes.spill_days) == (8, 1, ["2026-03-02"])
    state = p.state()
    state.usage_spills = writes.spill_days  # what the settlement's transaction writes on the balance
    ledger.models.Account(keys.account_pk("acct-s"), keys.STATE).update(
        actions=[ledger.models.Account.body.set(to_json(state))])
    api = usage_api(ledger)
    total = sum(range(1, 41))  # 1 + 2 + ... + 40 = 820 credits
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "user"}, sub="acct-s"))
    assert status == 200 and body["total"] == f"{total}.000000" and len(body["groups"]) == 40
    usage_fold.fold_spills_now(ledger.models, "acct-s")
    items = usage_items(ledger, "acct-s")
    assert not [i for i in items if i["sk"]["S"].startswith("USAGE#E#")]
    assert len([i for i in items if i["sk"]["S"].startswith("USAGE#A#D#")]) == 40
    assert p.state().usage_spills == []
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "user"}, sub="acct-s"))
    assert status == 200 and body["total"] == f"{total}.000000"
    assert next(g for g in body["groups"] if g["key"] == "u39")["total"] == "40.000000"


def legacy_item(account_id: str, sk: str, cells: dict[tuple[int, Cell], int]) -> dict[str, Any]:
    return {"pk": {"S": keys.account_pk(account_id)}, "sk": {"S": sk},
            **{usage.attribute(hour, cell): {"N": str(v)} for (hour, cell), v in cells.items()}}


def test_the_previous_designs_items_are_folded_resumably_and_once(
    teams: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture's usage rebuilt as the previous design held it (one item per day, and per container
    and day), then folded: an interrupted fold resumed, and a second fold, give the same report."""
    ledger = teams.ledger
    api = usage_api(ledger)
    query = {"month": "2026-03", "group_by": "container"}
    _, before, _ = call(api, api_event("/v1/usage", query, sub="acct-t"))
    _, hourly_before, _ = call(api, api_event("/v1/usage", {"from": "2026-03-02", "to": "2026-03-03",
                                                              "granularity": "hour", "group_by": "label:team"},
                                              sub="acct-t"))
    # the previous design: rebuild the same usage as day items, and mark the balance as not folded
    client = boto3.client("dynamodb")
    for item in usage_items(ledger, "acct-t"):
        client.delete_item(TableName=ledger.models.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
    for (day, container), usage_day in days_of(teams.entries()).items():
        sk = keys.container_usage_day_sk(container, day) if container else keys.usage_day_sk(day)
        cells = {(h, cell): v for h, hc in usage_day.hours.items() for cell, v in hc.items()}
        client.put_item(TableName=ledger.models.table_name, Item=legacy_item("acct-t", sk, cells))
    state = teams.state()
    state.usage_legacy = True
    ledger.models.Account(keys.account_pk("acct-t"), keys.STATE).update(
        actions=[ledger.models.Account.body.set(to_json(state))])
    _, legacy_read, _ = call(api, api_event("/v1/usage", query, sub="acct-t"))
    assert legacy_read["groups"] == before["groups"]  # read from the previous design's items meanwhile
    # interrupted: the second item's fold fails after the first is done
    real, calls = usage_fold._fold_legacy, []

    def failing(models: Any, account_id: str, item: dict[str, Any]) -> int:
        calls.append(item["sk"]["S"])
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real(models, account_id, item)

    monkeypatch.setattr(usage_fold, "_fold_legacy", failing)
    with pytest.raises(RuntimeError):
        usage_fold.fold_account(ledger.models, "acct-t")
    _, halfway, _ = call(api, api_event("/v1/usage", query, sub="acct-t"))
    assert halfway["groups"] == before["groups"]  # half folded, half not: each µcr counted once
    monkeypatch.setattr(usage_fold, "_fold_legacy", real)
    moved = usage_fold.fold_account(ledger.models, "acct-t")
    assert moved > 0 and usage_fold.fold_account(ledger.models, "acct-t") == 0  # a second run: nothing left
    assert not [i for i in usage_items(ledger, "acct-t") if i["sk"]["S"][:8] in ("USAGE#D#", "USAGE#C#")]
    assert teams.state().usage_legacy is False
    _, after, _ = call(api, api_event("/v1/usage", query, sub="acct-t"))
    _, hourly_after, _ = call(api, api_event("/v1/usage", {"from": "2026-03-02", "to": "2026-03-03",
                                                             "granularity": "hour", "group_by": "label:team"},
                                             sub="acct-t"))
    assert after["groups"] == before["groups"] and hourly_after["groups"] == hourly_before["groups"]
    # and the reconciliation finds the folded aggregates equal to the ledger
    report = reconcile(ledger.models, ledger.catalog, accounts=["acct-t"], read_rate=10_000)
    assert report.differences == 0, report.details


def test_reconciliation_checks_the_month_rollups_against_the_hours(teams: Platform) -> None:
    ledger = teams.ledger
    report = reconcile(ledger.models, ledger.catalog, accounts=["acct-t"], read_rate=10_000)
    assert report.differences == 0, report.details
    month_item = next(i for i in usage_items(ledger, "acct-t") if i["sk"]["S"].startswith("USAGE#A#M#2026-03#"))
    boto3.client("dynamodb").update_item(
        TableName=ledger.models.table_name, Key={"pk": month_item["pk"], "sk": month_item["sk"]},
        UpdateExpression="ADD d02 :one", ExpressionAttributeValues={":one": {"N": "1"}})
    report = reconcile(ledger.models, ledger.catalog, accounts=["acct-t"], read_rate=10_000)
    assert report.differences == 1
    [reason] = report.details["acct-t"]
    assert reason.startswith("usage 2026-03-02 (account): 1 cells of the month rollup differ")


def test_days_outside_the_range_of_a_month_item_are_left_out(teams: Platform) -> None:
    """A range from Mar 3 reads March's month items whole, and keeps Mar 3 only: 1.96 (c1's hour)."""
    status, body, _ = call(usage_api(teams.ledger), api_event("/v1/usage", {"from": "2026-03-03", "to": "2026-03-31"},
                                                              sub="acct-t"))
    assert status == 200 and body["total"] == "1.960000"
    assert date.fromisoformat(body["series"][0]["date"]) == date(2026, 3, 3)


def test_the_days_label_combinations_are_kept_apart_from_the_balance(teams: Platform) -> None:
    """The day's label combinations live in ``LABELS``, written only when they change: a stop of a
    combination the day knows writes no more than an unlabelled stop; a balance that still holds them
    (written before) keeps them until its next change moves them."""
    ledger = teams.ledger
    client = boto3.client("dynamodb")
    table, pk = ledger.models.table_name, {"S": keys.account_pk("acct-t")}

    def stored(sk: str) -> dict[str, Any]:
        return client.get_item(TableName=table, Key={"pk": pk, "sk": {"S": sk}}, ConsistentRead=True).get("Item", {})

    def on_balance() -> Any:
        return json.loads(stored(keys.STATE)["body"]["S"]).get("label_days")

    assert on_balance() in (None, {})
    labels = json.loads(stored(keys.LABELS)["body"]["S"])
    assert (labels["day"], len(labels["combinations"])) == ("2026-03-03", 1)  # Mar 3: team a only
    seen: list[list[str]] = []

    def keys_written(params: dict[str, Any], **_: Any) -> None:
        bodies = [next(iter(i.values())) for i in params["TransactItems"]]
        seen.append([(b.get("Key") or b["Item"])["sk"]["S"] for b in bodies])

    ledger.models.connection.client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems",
                                                         keys_written)
    one_hour(teams, "c1", "03", 14)  # team a again: known that day
    assert keys.LABELS not in seen[-1]
    one_hour(teams, "c2", "03", 16)  # team b: new that day
    assert keys.LABELS in seen[-1]
    assert len(json.loads(stored(keys.LABELS)["body"]["S"])["combinations"]) == 2
    # a balance of the previous layout: its combinations inside, no LABELS item
    state = json.loads(stored(keys.STATE)["body"]["S"])
    state["label_days"] = json.loads(stored(keys.LABELS)["body"]["S"])
    client.update_item(TableName=table, Key={"pk": pk, "sk": {"S": keys.STATE}}, UpdateExpression="SET body = :b",
                       ExpressionAttributeValues={":b": {"S": json.dumps(state)}})
    client.delete_item(TableName=table, Key={"pk": pk, "sk": {"S": keys.LABELS}})
    assert len(teams.state().label_days.combinations) == 2  # read from the balance
    one_hour(teams, "c1", "03", 18)  # known: nothing changes, yet the first change moves them (the start's)
    assert [keys.LABELS in t for t in seen[-2:]] == [True, False] and on_balance() in (None, {})
    assert len(teams.state().label_days.combinations) == 2
