"""The capacity planner (``channel_server.plan``): its model's parts against DynamoDB's
rules and the store's real items, and docs/capacity.md against the planner's output.

- Item sizes, index write units and query read units follow DynamoDB's documented rules.
- The items the planner sizes are those the store writes to the embedded DynamoDB.
- With the account budget, no plan's posts exceed ``postsPerSecond``; the new settings
  raise the live event's ceilings.
- Each command docs/capacity.md shows prints exactly the output shown under it, and
  every figure in the page's prose is one those outputs print.
- Every price and quota carries its source and the date it was read, and is used.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections import Counter
from typing import Any

import pytest

from channel_server import plan, plan_figures, plan_report
from channel_server.handlers import protocol, spec, store
from support.doc_commands import ROOT, run

DOC = "docs/capacity.md"
PLAN_COMMAND = re.compile(r"\.venv/bin/python -m channel_server\.plan( .*)?")


# --- DynamoDB's rules --------------------------------------------------------------------------


def test_item_sizes_follow_dynamodbs_rules() -> None:
    # a string: its name and its UTF-8 bytes; a number: its name, a byte per two significant
    # digits and one more (leading and trailing zeros do not count); a boolean: its name and one
    assert plan_figures.item_size({"name": {"S": "héllo"}}) == 4 + 6
    assert plan_figures.item_size({"n": {"N": "1764097500"}}) == 1 + 4 + 1  # 17640975: eight significant digits
    assert plan_figures.item_size({"n": {"N": "123"}}) == 1 + 2 + 1
    assert plan_figures.item_size({"b": {"BOOL": True}, "s": {"S": ""}}) == 2 + 1
    # a list: three bytes, and each element one more
    assert plan_figures.item_size({"l": {"L": [{"S": "ab"}, {"N": "7"}]}}) == 1 + 3 + (2 + 1) + (2 + 1)


def _item(channel: str, expires: int, **more: Any) -> dict[str, Any]:
    return {spec.CONNECTION_ID: {"S": "c1"}, spec.CHANNEL_ID: {"S": channel}, spec.EXPIRES_AT: {"N": str(expires)},
            **{name: {"S": value} for name, value in more.items()}}


def test_index_writes_follow_dynamodbs_rules() -> None:
    index = plan_figures.Index("byChannel", spec.CHANNEL_ID, spec.INDEX_PROJECTED)
    sparse = plan_figures.Index("bySender", spec.SENDER_ID, ())

    def units(before: Any, after: Any, transactional: bool = False) -> plan_figures.Units:
        return plan_figures.write_units([plan_figures.Write(before, after, transactional)], (index, sparse), 1024)

    new = units(None, _item("lobby", 10))
    assert (new.table, dict(new.index)) == (1, {"byChannel": 1})  # a new entry: one write
    moved = units(_item("lobby", 10), _item("games", 10))
    assert dict(moved.index) == {"byChannel": 2}  # its key changed: a delete and a put
    touched = units(_item("lobby", 10), _item("lobby", 20))
    assert dict(touched.index) == {"byChannel": 1}  # a projected attribute changed: one
    unprojected = units(_item("lobby", 10), _item("lobby", 10, note="x"))
    assert dict(unprojected.index) == {}  # neither its keys nor its projection: none
    deleted = units(_item("lobby", 10, senderId="s"), None)
    assert (deleted.table, dict(deleted.index)) == (1, {"byChannel": 1, "bySender": 1})
    big = units(None, _item("lobby", 10, note="x" * 1500), transactional=True)
    assert big.table == 2 * 2  # two started KB, twice in a transaction


def test_a_query_reads_half_a_unit_per_4_kb_of_each_page() -> None:
    # 100 entries of 100 bytes: one page of 10,000 bytes, three 4 KB units, half each
    assert plan_figures.query_read_units(100, 100, 1024 * 1024, 4096) == (1, 1.5)
    # a page holds what fits in 1 MB: 10,486 entries of 100 bytes
    pages, units = plan_figures.query_read_units(20_000, 100, 1024 * 1024, 4096)
    assert pages == 2
    assert units == (256 + 233) / 2  # 1,048,600 bytes then 951,400 bytes


# --- the store's real items ------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 4])
def test_the_items_the_planner_sizes_are_those_the_store_writes(
        shards: int, embedded_dynamodb: Any, table_definition: Any, dynamodb: Any) -> None:
    from support.table import create_test_table

    # GIVEN the store on the embedded DynamoDB and the planner's recording client, one clock
    table = create_test_table(dynamodb, table_definition)
    try:
        real = store.Store(dynamodb, table, plan_figures.indexes(shards)[0].name, clock=lambda: plan_figures.EXAMPLE_NOW,
                           heartbeats=True, index_shards=shards)
        recording = plan_figures.RecordingClient()
        recorded = store.Store(recording, table, plan_figures.indexes(shards)[0].name, clock=lambda: plan_figures.EXAMPLE_NOW,
                               heartbeats=True, index_shards=shards)
        sender = protocol.new_sender_id()
        # WHEN both register, join, and one connection leaves
        for each in (real, recorded):
            each.register(plan_figures.EXAMPLE_CONNECTION_ID)
            each.join(plan_figures.EXAMPLE_CONNECTION_ID, plan_figures.EXAMPLE_CHANNEL_ID, sender)
            each.join(plan_figures.EXAMPLE_OTHER_CONNECTION_ID, plan_figures.EXAMPLE_CHANNEL_ID, sender)
            each.close_connection(plan_figures.EXAMPLE_OTHER_CONNECTION_ID)
        # THEN the table holds exactly the items the recording client holds
        stored = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
        assert sorted(map(_canonical, stored)) == sorted(map(_canonical, recording.items.values()))
        requests = Counter(plan_figures.REQUESTS["connect_heartbeats"]) + Counter(plan_figures.REQUESTS["disconnect"])
        requests.update({operation: 2 * count for operation, count in plan_figures.REQUESTS["join"].items()})
        assert recording.requests == requests
    finally:
        dynamodb.delete_table(TableName=table)


def _canonical(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


def test_the_budget_row_is_the_one_postbudget_writes() -> None:
    measured = plan_figures.measure(heartbeats=False, shards=1, message=b"{}", history_seconds=0, posts_in_flight=64)
    row = measured.budget_row
    assert row[spec.CONNECTION_ID] == row[spec.CHANNEL_ID]
    assert row[spec.CONNECTION_ID]["S"].startswith(spec.BUDGET_PREFIX)
    counters = {name: value for name, value in row.items() if name.startswith(spec.BUDGET_TAKEN)}
    assert list(counters.values()) == [{"N": "128"}]  # two grants of 64 in one slot
    # the second's first grant makes its row (an index entry too, on the unsharded index); the next updates it
    first, later = (plan_figures.write_units(measured.writes[name], plan_figures.indexes(1), 1024) for name in ("grant_first", "grant"))
    assert (first.table, dict(first.index), later.table, dict(later.index)) == (1, {spec.CHANNEL_INDEX: 1}, 1, {})


# --- the model -------------------------------------------------------------------------------

LIVE_EVENT = plan.Workload(connections=100_000, channels=1, members=100_000, publishes_per_second=5,
                           message_bytes=100, joins_per_second=2000, hours=2)
WORKLOADS = [
    plan.Workload(connections=1000, channels=50, members=20, publishes_per_second=0.2, message_bytes=100),
    plan.Workload(connections=100_000, channels=100, members=1000, publishes_per_second=1, message_bytes=100),
    LIVE_EVENT,
]


@pytest.mark.parametrize("workload", WORKLOADS, ids=["chat", "100 channels", "live event"])
@pytest.mark.parametrize("budget", [500, 5000, 200_000])
def test_with_the_budget_no_plan_posts_more_than_it(workload: plan.Workload, budget: int) -> None:
    settings = dataclasses.replace(plan.default_settings(), posts_per_second=budget)
    model = plan.Model(workload, settings, plan.Environment(account_requests_per_second=1e9))
    state = model.evaluate(workload.publishes_per_second, workload.joins_per_second)
    requests = next(load for load in state.loads if load.resource == plan.REQUESTS_ROW)
    rates = state.rates
    # the peak: the clients' frames, the new connections, and the posts, which the budget caps
    frames = rates["publishes"] + rates["join_churn"] + workload.joins_per_second + rates["pings"]
    assert requests.load <= frames + rates["connects"] + budget + 1e-6
    if rates["message_posts"] + rates["heartbeat_posts"] >= budget:
        assert requests.load == pytest.approx(frames + rates["connects"] + budget)


def test_unpaced_a_large_fan_out_asks_for_more_than_the_account_allows() -> None:
    unpaced = plan.plan(LIVE_EVENT, plan.default_settings().unpaced())
    assert unpaced.figures["posts a second a publish to the largest channel asks for, unpaced"] == (
        (1 + spec.DEFAULT_FANOUT_CONCURRENCY) * spec.DEFAULT_POSTS_IN_FLIGHT * 1000 / plan.DEFAULT_ROUND_TRIP_MS)
    assert unpaced.first_limit is not None and unpaced.first_limit.resource == plan.REQUESTS_ROW
    assert unpaced.max_publish_rate.value == 0  # its first publish draws 429s
    assert unpaced.latency.reply_ms is None


def test_shards_and_the_budget_raise_the_live_events_ceilings() -> None:
    raised = plan.Environment(account_requests_per_second=600_000, new_connections_per_second=2500, post_cpu_us=80)
    settings = dataclasses.replace(plan.default_settings(), posts_per_second=550_000, channel_index_shards=8,
                                   posts_in_flight=1000, fanout_concurrency=100)
    unpaced, paced = plan.plan(LIVE_EVENT, settings.unpaced(), raised), plan.plan(LIVE_EVENT, settings, raised)
    assert paced.max_publish_rate.value > unpaced.max_publish_rate.value > 0
    assert paced.max_join_rate.value > unpaced.max_join_rate.value > 0
    # eight partitions take (almost) eight times the joins of one: the rest is the churn's writes
    writes = plan.PARTITION_WRITES_ROW
    assert paced.max_join_rate.ceilings[writes] == pytest.approx(8 * unpaced.max_join_rate.ceilings[writes], rel=0.03)
    assert unpaced.max_join_rate.limited_by in (plan.PARTITION_WRITES_ROW, plan.PARTITION_ROW)
    assert paced.max_join_rate.limited_by == plan.CONNECTIONS_ROW
    # and the event fits: no limit reached, every member reached within a second
    assert paced.first_limit is not None and (paced.first_limit.use or 0) < 1
    assert paced.latency.last_delivery_ms is not None and paced.latency.last_delivery_ms < 1000


def test_a_channel_of_one_partition_is_its_indexs_first_limit_unsharded() -> None:
    # five publishes a second read past the partition's read units; 2,000 joins write past its write units
    loads = {load.resource: load for load in plan.plan(LIVE_EVENT, plan.default_settings().unpaced()).loads}
    assert (loads[plan.PARTITION_READS_ROW].use or 0) > 1
    assert (loads[plan.PARTITION_WRITES_ROW].use or 0) > 2


def test_the_command_refuses_what_the_component_refuses() -> None:
    done = run(".venv/bin/python -m channel_server.plan --channel-index-shards 65")
    assert done.returncode == 2
    assert "ChannelServerArgs channel_index_shards=65: must be from 1 to" in done.stderr


def test_the_json_is_the_texts_plan() -> None:
    done = run(".venv/bin/python -m channel_server.plan --members 100000 --compare --json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"unpaced", "paced"}
    assert data["paced"]["first_limit"]["resource"] == plan.BUDGET_ROW
    assert data["unpaced"]["latency"]["reply_ms"] is None
    assert data["paced"]["requests"] == {name: dict(counts) for name, counts in plan_figures.REQUESTS.items()}
    assert data["paced"]["facts"]["api_gateway_requests_per_second"]["value"] == 10_000


# --- prices and quotas -------------------------------------------------------------------------


def test_every_price_and_quota_has_its_source_and_date_and_is_used() -> None:
    source = "".join((ROOT / f"components/{module}.py").read_text() for module in ("plan", "plan_figures", "plan_report"))
    for key, fact in plan_figures.load_facts().items():
        assert fact.source.startswith("https://"), key
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", fact.read), key
        assert f'"{key}"' in source or '"lambda_gb_second_{' in source and key.startswith("lambda_gb_second_"), (
            f"{key} is in plan_prices.json but the planner does not use it")


def test_the_data_file_ships_with_the_package() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "plan_prices.json" in package_data["channel_server"]
    assert (ROOT / "components/plan_prices.json").is_file()


# --- docs/capacity.md ----------------------------------------------------------------------------


def documented_plans() -> list[tuple[str, str]]:
    """Each planner command the page shows (its lines joined) and the text block under it."""
    text = (ROOT / DOC).read_text()
    blocks = re.findall(r"^```(\w*)\n(.*?)^```\n", text, re.S | re.M)
    shown = []
    for (tag, body), (next_tag, output) in zip(blocks, blocks[1:] + [("", "")], strict=True):
        command = " ".join(body.replace("\\\n", " ").split())
        if tag == "sh" and PLAN_COMMAND.fullmatch(command):
            assert next_tag == "text", f"{DOC}: `{command}` is not followed by its output"
            shown.append((command, output))
    return shown


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    """What each documented command prints, run as the page shows it."""
    printed = {}
    for command, _ in documented_plans():
        done = run(command)
        assert done.returncode == 0, f"`{command}`:\n{done.stderr}"
        printed[command] = done.stdout
    return printed


def test_each_documented_plan_prints_what_the_page_shows(outputs: dict[str, str]) -> None:
    shown = documented_plans()
    assert len(shown) == 5
    for command, output in shown:
        assert outputs[command] == output, (
            f"{DOC}: `{command}` prints other figures than the page shows: run it and put its output under it, "
            "then check the prose still says what the figures say")


def test_the_readmes_plan_is_one_the_page_shows_and_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if PLAN_COMMAND.fullmatch(line)]
    assert commands, "README.md shows no planner command"
    assert set(commands) <= {command for command, _ in documented_plans()}


def prose_figures(text: str) -> list[str]:
    """The figures in the page's prose: outside code blocks, code spans and link targets,
    leaving out the numbers of an ordered list."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"^\s*\d+\. ", "", text, flags=re.M)
    return re.findall(r"(?<![\w.,])\$?\d(?:[\d,]*\d)?(?:\.\d+)?", text)


def test_every_figure_in_the_prose_is_one_the_planner_prints(outputs: dict[str, str]) -> None:
    printed = "\n".join(outputs.values())
    figures = prose_figures((ROOT / DOC).read_text())
    assert figures, "the page's prose quotes no figure"
    missing = [figure for figure in figures
               if not re.search(rf"(?<![\d,.]){re.escape(figure)}(?![\d]|,\d|\.\d)", printed)]
    assert missing == [], f"{DOC} quotes figures no documented command prints: {missing}"


def test_json_alone_is_the_paced_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_report.main(["--channels", "2", "--members", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["posts_per_second"] == spec.DEFAULT_POSTS_PER_SECOND


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--round-trip-ms", "0", "must be a number above 0"),
    ("--account-requests-per-second", "0", "must be a number above 0"),
    ("--lambda-concurrency", "0", "must be a number above 0"),
    ("--members", "1.5", "must be a whole number of at least 1"),
    ("--message-bytes", "140000", "a message frame is at most 131072 bytes"),
    ("--hours", "10000", "a month has 730 hours"),
    ("--publishes-per-second", "lots", "must be a number"),
])
def test_a_value_the_model_cannot_use_is_refused_saying_why(
        flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plan_report.main([flag, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {flag}: {value}: {message}" in error and "Traceback" not in error, error
