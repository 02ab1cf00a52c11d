"""The planner's output and its command line: a plan as text (one, or the unpaced
server's beside the paced one) or JSON, and ``python -m channel_server.plan``.

The model is :mod:`.plan`; docs/capacity.md shows this output for its worked
workloads (``tests/test_plan.py`` checks the page is what this prints).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import textwrap
from typing import Any, Mapping, Sequence

from . import args as component_args
from .handlers import protocol
from .plan import (HOURS_PER_MONTH, Environment, Latency, Load, Plan, Settings, Workload, client_ping_default,
                   default_settings, number, significant)
from .plan import plan as plan_of  # "plan" names a Plan in the loops below
from .plan_figures import REQUESTS, load_facts


# --- output -----------------------------------------------------------------------------------

def percent(use: float | None) -> str:
    if use is None:
        return ""
    return "∞" if math.isinf(use) else f"{number(use * 100)}%"


def dollars(value: float) -> str:
    return "$" + (f"{value:,.0f}" if value >= 100 else significant(value) if value else "0")


#: The width text output wraps its prose at.
WIDTH = 100


def _wrapped(head: str, body: str) -> list[str]:
    """``body`` after ``head``, wrapped at WIDTH, continuation lines indented under it."""
    return textwrap.wrap(body, WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                         break_on_hyphens=False, break_long_words=False) or [head.rstrip()]


def _workload_text(w: Workload, frame_bytes: int) -> str:
    channels = f"{number(w.channels)} channel{'s' if w.channels != 1 else ''} of {number(w.members)} members"
    joins = f"{number(w.joins_per_second)} joins/s at peak" if w.joins_per_second else "no join storm"
    pings = f"clients ping after {number(w.client_ping_seconds)} s idle" if w.client_ping_seconds else "no client pings"
    return (f"{number(w.connections)} connections; {channels}; {number(w.publishes_per_second)} publishes/s a "
            f"channel of {number(w.message_bytes)} bytes of data ({number(frame_bytes)}-byte frames); {joins}; "
            f"{pings}; {number(w.hours)} hours a month")


def _settings_text(s: Settings) -> str:
    heartbeats = (f"heartbeatIntervalMinutes {s.heartbeat_interval_minutes}" if s.heartbeat_interval_minutes
                  else "no heartbeats")
    history = f"historySeconds {number(s.history_seconds)}" if s.history_seconds else "no history"
    return (f"postsInFlight {number(s.posts_in_flight)}; inlineFanoutLimit {number(s.inline_fanout_limit)}; "
            f"{heartbeats}; {history}; publishMemoryMb {number(s.publish_memory_mb)}, "
            f"lambdaMemoryMb {number(s.lambda_memory_mb)} ({s.lambda_architecture})")


def _changed_text(s: Settings) -> str:
    budget = "none" if s.posts_per_second is None else number(s.posts_per_second)
    return (f"postsPerSecond {budget}; channelIndexShards {s.channel_index_shards}; "
            f"fanoutConcurrency {s.fanout_concurrency}")


def _assumed_text(e: Environment) -> str:
    cpu = f"{number(e.post_cpu_us)} µs CPU a post" if e.post_cpu_us else "CPU a post not given"
    return (f"management API round trip {number(e.round_trip_ms)} ms; DynamoDB and SQS calls "
            f"{number(e.dynamodb_ms)} ms; {cpu}")


def _quotas_text(plan: Plan) -> str:
    limits = {load.fact: load.limit for load in plan.loads if load.fact}
    burst = plan.facts["api_gateway_requests_per_second"].burst
    return (f"{number(limits.get('api_gateway_requests_per_second'))} requests/s (burst {number(burst)}); "
            f"{number(limits.get('api_gateway_new_connections_per_second'))} new connections/s; "
            f"{number(limits.get('lambda_concurrent_executions'))} Lambda executions")


def _load_cell(load: Load | None) -> str:
    if load is None:
        return "-"
    if load.limit is None:
        return number(load.load)
    if load.unit == "share":
        return percent(load.use)
    return f"{number(load.load)} / {number(load.limit)} {percent(load.use)}"


def _first_limit_text(plan: Plan) -> str:
    first = plan.first_limit
    if first is None or first.use is None:
        return "no limit"
    if first.use > 1:
        return f"first limit {first.resource} ×{number(first.use)}"
    return f"no limit reached; nearest {first.resource} at {percent(first.use)}"


def _latency_text(latency: Latency) -> str:
    if latency.reply_ms is None:
        return f"a publish to the largest channel: no bound ({latency.why})"
    return (f"a publish to the largest channel: reply {number(latency.reply_ms)} ms, last delivery "
            f"{number(latency.last_delivery_ms)} ms")


def _ceiling_rows(plans: Sequence[Plan]) -> list[list[str]]:
    names = list(dict.fromkeys(name for plan in plans for rate in (plan.max_publish_rate, plan.max_join_rate)
                               for name in rate.ceilings))
    rows = []
    for name in names:
        cells = [number(plan.max_publish_rate.ceilings.get(name)) for plan in plans]
        cells += [number(plan.max_join_rate.ceilings.get(name)) for plan in plans]
        rows.append([name, *cells])
    rows.append(["lowest", *[number(plan.max_publish_rate.value) for plan in plans],
                 *[number(plan.max_join_rate.value) for plan in plans]])
    return rows


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
            .rstrip() for row in rows]


def text(plans: Sequence[Plan], labels: Sequence[str]) -> str:
    """The plans of one workload (one, or the unpaced server's and these settings' side by side) as text."""
    first = plans[0]
    frame_bytes = int(first.figures["message frame bytes"])
    lines = [*_wrapped("Workload: ", _workload_text(first.workload, frame_bytes)),
             *_wrapped("Settings: ", _settings_text(first.settings))]
    compare = len(plans) > 1
    for label, plan in zip(labels, plans, strict=True):
        lines += _wrapped(f"  {label}: ".ljust(10) if compare else "          ", _changed_text(plan.settings))
    lines += [*_wrapped("Assumed:  ", _assumed_text(first.environment)), *_wrapped("Quotas:   ", _quotas_text(first)),
              ""]
    names = list(dict.fromkeys(load.resource for plan in plans for load in plan.loads))
    by_name = [{load.resource: load for load in plan.loads} for plan in plans]
    columns = ["Resource: load / limit, use", *(labels if compare else [""])]
    lines += _table([columns, *[[name, *(_load_cell(loads.get(name)) for loads in by_name)] for name in names]])
    lines.append("")
    for label, plan in zip(labels, plans, strict=True):
        head = f"{label}: ".ljust(7) if compare else ""
        lines += _wrapped(head, _first_limit_text(plan))
        lines += _wrapped(" " * len(head), _latency_text(plan.latency))
    lines.append("")
    short = {"unpaced": "unpaced", "paced": "paced"}
    ceiling_head = (["Ceilings of the largest channel", *(f"pub/s {short.get(label, label)}" for label in labels),
                     *(f"joins/s {short.get(label, label)}" for label in labels)] if compare
                    else ["Ceilings of the largest channel", "publishes/s", "joins/s"])
    lines += _table([ceiling_head, *_ceiling_rows(plans)])
    lines.append("")
    cost_rows = [["Cost a month", *(labels if compare else [""])]]
    items = list(dict.fromkeys((line.service, line.item) for plan in plans for line in plan.cost_lines))
    by_item = [{(line.service, line.item): line.usd for line in plan.cost_lines} for plan in plans]
    for service in dict.fromkeys(service for service, _ in items):
        cost_rows.append([service, *(dollars(plan.cost.get(service, 0.0)) for plan in plans)])
        cost_rows += [[f"  {item}", *(dollars(usd[(service, item)]) if (service, item) in usd else "-"
                                      for usd in by_item)]
                      for line_service, item in items
                      if line_service == service and any(usd.get((service, item)) for usd in by_item)]
    cost_rows.append(["total", *(dollars(sum(plan.cost.values())) for plan in plans)])
    lines += _table(cost_rows)
    notes = [(label, note) for label, plan in zip(labels, plans, strict=True) for note in plan.notes]
    if notes:
        lines.append("")
    for label, note in notes:
        lines += _wrapped(f"Note, {label}: " if compare else "Note: ", note)
    return "\n".join(lines) + "\n"


def figures_text(plan: Plan) -> str:
    """The per-operation figures and the prices and quotas of ``plan``, with their sources."""
    lines = ["DynamoDB requests an operation (tests/test_requests.py checks them):"]
    lines += [f"  {name}: " + ", ".join(f"{operation} {count}" for operation, count in requests.items())
              for name, requests in REQUESTS.items()]
    lines.append("Per operation, from the code (handlers/store.py, handoff.py, spec.py, args.py):")
    lines += [f"  {name}: {value if isinstance(value, str) else number(value)}" for name, value in plan.figures.items()]
    lines.append("Prices and quotas (components/plan_prices.json):")
    for fact in plan.facts.values():
        if fact.price:
            usd = f"{fact.value:.10f}".rstrip("0").rstrip(".")
            value = f"${usd}" + (f" per {number(fact.per)}" if fact.per != 1 else "")
        else:
            value = number(fact.value) + (f", burst {number(fact.burst)}" if fact.burst else "")
        lines += _wrapped(f"  {fact.key}: ", f"{value}: {fact.unit}")
        lines += _wrapped("    ", f"{fact.source}, read {fact.read}")
        if fact.read_via:
            lines += _wrapped("    ", f"read in: {fact.read_via}")
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every infinite float as None (JSON has no infinity)."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def to_json(plan: Plan) -> dict[str, Any]:
    """``plan`` as plain data (None where there is no bound)."""
    first = plan.first_limit
    data: dict[str, Any] = _finite({
        "workload": dataclasses.asdict(plan.workload),
        "settings": dataclasses.asdict(plan.settings),
        "environment": dataclasses.asdict(plan.environment),
        "loads": [{"resource": load.resource, "load": load.load, "limit": load.limit, "unit": load.unit,
                   "use": load.use, "quota": load.fact} for load in plan.loads],
        "first_limit": None if first is None else {"resource": first.resource, "use": first.use},
        "latency": dataclasses.asdict(plan.latency),
        "max_publish_rate": dataclasses.asdict(plan.max_publish_rate),
        "max_join_rate": dataclasses.asdict(plan.max_join_rate),
        "cost": {**plan.cost, "total": sum(plan.cost.values())},
        "cost_lines": [dataclasses.asdict(line) for line in plan.cost_lines],
        "figures": plan.figures,
        "requests": REQUESTS,
        "facts": {key: dataclasses.asdict(fact) for key, fact in plan.facts.items()},
        "notes": list(plan.notes),
    })
    return data


# --- the command ---------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    defaults, environment = default_settings(), Environment()
    p = argparse.ArgumentParser(
        prog="python -m channel_server.plan",
        description="A workload's load on each AWS quota and partition limit, its first limit, the latency of a "
                    "publish to its largest channel, the ceilings of that channel and the monthly cost "
                    "(docs/capacity.md).")
    w = p.add_argument_group("workload")
    w.add_argument("--connections", type=_whole, help="connections at once (default: channels × members)")
    w.add_argument("--channels", type=_whole, default=1, help="channels of --members members each (default 1)")
    w.add_argument("--members", type=_whole, default=1000, help="members of each channel, the largest's (default 1000)")
    w.add_argument("--publishes-per-second", type=_positive, default=1.0, help="publishes a second per channel "
                   "(default 1)")
    w.add_argument("--message-bytes", type=_message_bytes, default=100,
                   help="characters of a publish's data (default 100)")
    w.add_argument("--joins-per-second", type=_positive, default=0.0, help="joins a second to the largest channel at "
                   "peak, each from a new connection (default 0)")
    w.add_argument("--client-ping-seconds", type=_positive, default=client_ping_default(),
                   help="seconds idle after which a client pings, 0 never (default: ChannelClient's, %(default)g)")
    w.add_argument("--hours", type=_hours, default=HOURS_PER_MONTH, help="hours a month the workload runs "
                   "(default %(default)g, all month)")
    s = p.add_argument_group("settings (the component's; defaults from components/args.py)")
    s.add_argument("--posts-per-second", type=_whole, default=defaults.posts_per_second)
    s.add_argument("--channel-index-shards", type=_whole, default=defaults.channel_index_shards)
    s.add_argument("--fanout-concurrency", type=_whole, default=defaults.fanout_concurrency)
    s.add_argument("--posts-in-flight", type=_whole, default=defaults.posts_in_flight)
    s.add_argument("--inline-fanout-limit", type=_whole, default=defaults.inline_fanout_limit)
    s.add_argument("--heartbeat-interval-minutes", type=int, default=defaults.heartbeat_interval_minutes)
    s.add_argument("--history-seconds", type=int, default=defaults.history_seconds)
    s.add_argument("--lambda-memory-mb", type=_whole, default=defaults.lambda_memory_mb)
    s.add_argument("--publish-memory-mb", type=_whole, default=defaults.publish_memory_mb)
    s.add_argument("--lambda-architecture", default=defaults.lambda_architecture)
    e = p.add_argument_group("assumed (not measured on AWS) and quotas (defaults: plan_prices.json)")
    e.add_argument("--round-trip-ms", type=_above_zero, default=environment.round_trip_ms,
                   help="the management API's round trip from Lambda (default %(default)g, as bench/fanout.py)")
    e.add_argument("--dynamodb-ms", type=_above_zero, default=environment.dynamodb_ms,
                   help="a DynamoDB or SQS call's round trip from Lambda (default %(default)g)")
    e.add_argument("--post-cpu-us", type=_above_zero, help="CPU a post takes, µs of a full core: measure it with "
                   ".venv/bin/python bench/post_cpu.py (default: not given, the round trip alone bounds posting)")
    e.add_argument("--account-requests-per-second", type=_above_zero, help="API Gateway's account quota")
    e.add_argument("--new-connections-per-second", type=_above_zero, help="API Gateway's new connection quota")
    e.add_argument("--lambda-concurrency", type=_above_zero, help="Lambda's concurrent executions quota")
    o = p.add_argument_group("output")
    o.add_argument("--compare", action="store_true",
                   help="the server before its account budget (posts not paced, one index partition a channel) "
                   "beside these settings")
    o.add_argument("--json", action="store_true", help="JSON instead of text")
    o.add_argument("--figures", action="store_true", help="the per-operation figures, prices and quotas, "
                                                          "with their sources")
    return p


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number of at least 1")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: must be a number") from None


def _positive(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: must be a number of at least 0")
    return value


def _above_zero(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: must be a number above 0")
    return value


def _hours(text: str) -> float:
    value = _above_zero(text)
    if value > HOURS_PER_MONTH:
        raise argparse.ArgumentTypeError(f"{text}: a month has {HOURS_PER_MONTH:g} hours")
    return value


def _message_bytes(text: str) -> int:
    value = _whole(text)
    if value > protocol.API_GATEWAY_MAX_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(f"{text}: a message frame is at most {protocol.API_GATEWAY_MAX_MESSAGE_BYTES} "
                                         "bytes (API Gateway's limit), its data less")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    options = p.parse_args(argv)
    connections = options.connections or options.channels * options.members
    try:
        component_args.resolve({
            "posts_per_second": options.posts_per_second, "channel_index_shards": options.channel_index_shards,
            "fanout_concurrency": options.fanout_concurrency, "posts_in_flight": options.posts_in_flight,
            "inline_fanout_limit": options.inline_fanout_limit,
            "heartbeat_interval_minutes": options.heartbeat_interval_minutes,
            "history_seconds": options.history_seconds, "lambda_memory_mb": options.lambda_memory_mb,
            "publish_memory_mb": options.publish_memory_mb, "lambda_architecture": options.lambda_architecture,
        })
    except component_args.ChannelServerArgsError as exc:
        p.error(str(exc))
    settings = dataclasses.replace(
        default_settings(), posts_per_second=options.posts_per_second,
        channel_index_shards=options.channel_index_shards, fanout_concurrency=options.fanout_concurrency,
        posts_in_flight=options.posts_in_flight, inline_fanout_limit=options.inline_fanout_limit,
        heartbeat_interval_minutes=options.heartbeat_interval_minutes, history_seconds=options.history_seconds,
        lambda_memory_mb=options.lambda_memory_mb, publish_memory_mb=options.publish_memory_mb,
        lambda_architecture=options.lambda_architecture)
    workload = Workload(connections=connections, channels=options.channels, members=options.members,
                        publishes_per_second=options.publishes_per_second, message_bytes=options.message_bytes,
                        joins_per_second=options.joins_per_second, client_ping_seconds=options.client_ping_seconds,
                        hours=options.hours)
    environment = Environment(round_trip_ms=options.round_trip_ms, dynamodb_ms=options.dynamodb_ms,
                              post_cpu_us=options.post_cpu_us,
                              account_requests_per_second=options.account_requests_per_second,
                              new_connections_per_second=options.new_connections_per_second,
                              lambda_concurrency=options.lambda_concurrency)
    facts = load_facts()
    try:
        plans = [plan_of(workload, settings.unpaced(), environment, facts)] if options.compare else []
        plans.append(plan_of(workload, settings, environment, facts))
    except ValueError as exc:
        p.error(str(exc))
    labels = ["unpaced", "paced"] if options.compare else ["paced"]
    if options.json:
        data = {label: to_json(one) for label, one in zip(labels, plans, strict=True)}
        print(json.dumps(data if options.compare else data["paced"], indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(text(plans, labels))
        if options.figures:
            sys.stdout.write("\n" + figures_text(plans[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
