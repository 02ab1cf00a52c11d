"""The documentation against the code: every figure the docs state has one home in
the code (or is measured here), and these tests fail when the prose drifts from it.

- docs/configuration.md, "Configuration reference": one row per
  ``ChannelServerArgs`` field, with its config key, ``Pulumi.yaml`` type,
  ``Settings`` default and the range ``resolve`` enforces.
- docs/local-mode.md, "Options": one row per flag of
  ``python -m channel_server.local``, with the parser's default; its start-up
  transcript (and the README's) is what local mode prints, line for line.
- docs/architecture.md and docs/failure-semantics.md: retries, timeouts, pool
  widths, the fan-out's time reserve, join attempts, batch sizes, the retried
  cancellation codes, the row TTL, the route permissions, the code archive's
  size (measured).
- README.md and every page in docs/: each relative link and ``#anchor``
  resolves; ``Pulumi.yaml``'s runtime settings and local mode's messages are
  quoted as the code has them; no page states a test count (it changes with
  every test; pytest reports it).

A figure is found by a sentence pattern over the doc's prose (line breaks and
``**`` emphasis removed). A pattern that matches nothing fails too, so rewording
a sentence means updating its pattern here, not losing the check. A few optional
patterns catch other phrasings of the same figure ("connect timeout is 5 s")
wherever they turn up.
"""

from __future__ import annotations

import inspect
import io
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from channel_server import archive
from channel_server import args as args_module
from channel_server import config as config_module
from channel_server.args import ChannelServerArgsError, Settings, resolve
from channel_server.config import config_key
from channel_server.client import ChannelClient
from channel_server import features
from channel_server.handlers import app, protocol, sender, spec, store
from channel_server.local import server as local_server

ROOT = Path(__file__).resolve().parents[1]
README = "README.md"
ARCHITECTURE = "docs/architecture.md"
FAILURES = "docs/failure-semantics.md"
PROTOCOL = "docs/protocol.md"
CONFIGURATION = "docs/configuration.md"
LOCAL_MODE = "docs/local-mode.md"
CLIENT = "docs/client.md"
DOCS = (ARCHITECTURE, FAILURES)
#: Every page a user reads: the README and each page in docs/.
ALL_DOCS = (README, *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")))
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
PROJECT_CONFIG = PROJECT["config"]
RUNTIME_OPTIONS = PROJECT["runtime"]["options"]
FIELD_TYPES = config_module.field_kinds()  # field name -> str, int, float, bool, list or dict
#: ChannelClient's keyword arguments and their defaults.
CLIENT_DEFAULTS = {name: p.default for name, p in inspect.signature(ChannelClient).parameters.items()}


# --- a small Markdown reader --------------------------------------------------------------


def read(doc: str) -> str:
    return (ROOT / doc).read_text()


def prose(text: str) -> str:
    """The text as one line: whitespace collapsed, ``**`` emphasis dropped."""
    return " ".join(text.replace("**", "").split())


def section(text: str, heading: str) -> str:
    """The lines under ``heading`` (e.g. ``### Configuration reference``), up to the
    next heading of the same or a higher level. Lines inside code fences are not
    headings."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    try:
        start = lines.index(heading) + 1
    except ValueError:
        pytest.fail(f"no heading {heading!r}")
    body, fenced = [], False
    for line in lines[start:]:
        if line.startswith("```"):
            fenced = not fenced
        hashes = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < hashes <= level and line[hashes:hashes + 1] == " ":
            break
        body.append(line)
    return "\n".join(body)


def cells(line: str) -> list[str]:
    """The cells of one table row, split on unescaped ``|``."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in ``text``, in order: its body rows as lists of cells
    (the header row and the ``---`` row left out)."""
    found: list[list[list[str]]] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            found.append([cells(row) for row in block[2:]])
        block = []
    return found


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


# --- docs/configuration.md: the configuration reference ---------------------------------------


@dataclass(frozen=True)
class ConfigRow:
    key: str
    type: str
    default: str
    meaning: str
    field: str


def config_rows() -> list[ConfigRow]:
    (table,) = tables(section(read(CONFIGURATION), "## Configuration reference"))
    rows = []
    for row in table:
        assert len(row) == 5, f"{CONFIGURATION} row {row} should have 5 cells: key, type, default, meaning, field"
        key, kind, default, meaning, field = row
        rows.append(ConfigRow(key.strip("`"), kind, default, meaning, field.strip("`")))
    return rows


ROWS = config_rows()
ARGS_FIELDS = sorted(FIELD_TYPES)


def row_keys(row: ConfigRow) -> list[str]:
    """The config keys a row names: one, or an object field's one per field."""
    return [key.strip("`") for key in row.key.split(", ")]


def row_of(field: str) -> ConfigRow:
    for row in ROWS:
        if row.field == field:
            return row
    pytest.fail(f"{CONFIGURATION}: the configuration reference has no row for ChannelServerArgs field {field!r}")


def rendered_default(value: object) -> str:
    """A Settings default as the table writes it: ``unset`` for None or empty,
    anything else in backticks (whole floats as integers: 1000.0 is `1000`)."""
    if value is None or value == "" or value == {}:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"  # as config spells it
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_configuration_table_has_exactly_one_row_per_args_field() -> None:
    counts = Counter(row.field for row in ROWS)
    assert [field for field in ARGS_FIELDS if field not in counts] == [], f"ChannelServerArgs fields missing from the table in {CONFIGURATION}"
    assert sorted(set(counts) - set(ARGS_FIELDS)) == [], f"rows in {CONFIGURATION} for fields ChannelServerArgs does not have"
    assert sorted(field for field, n in counts.items() if n > 1) == [], f"fields with more than one row in {CONFIGURATION}"


@pytest.mark.parametrize("field", ARGS_FIELDS)
def test_configuration_row_key_is_the_fields_config_key(field: str) -> None:
    row = row_of(field)
    expected = (list(config_module.object_config_keys(field).values()) if field in config_module.OBJECT_FIELDS
                else [config_key(field)])
    assert row_keys(row) == expected, f"{CONFIGURATION} row for {field}: keys {row_keys(row)}, but config_key gives {expected}"


@pytest.mark.parametrize("field", ARGS_FIELDS)
def test_configuration_row_default_is_the_settings_default(field: str) -> None:
    row = row_of(field)
    expected = rendered_default(getattr(Settings(), field))
    assert row.default == expected, f"{CONFIGURATION} row `{row.key}`: default {row.default}, but Settings.{field} is {expected}"


@pytest.mark.parametrize("field", ARGS_FIELDS)
def test_configuration_row_type_is_the_declared_config_type(field: str) -> None:
    row = row_of(field)
    declared = [PROJECT_CONFIG.get(key) for key in row_keys(row)]
    if declared == [None]:
        # Pulumi.yaml cannot declare a map: only a dict field may be left out
        assert FIELD_TYPES[field] is dict, f"`{row.key}` is not declared in Pulumi.yaml"
        expected = "map (not declared)"
    else:
        assert None not in declared, f"`{row.key}` is not declared in Pulumi.yaml"
        expected = ", ".join(d["type"] for d in declared)
    assert row.type == expected, f"{CONFIGURATION} row `{row.key}`: type {row.type!r}, but Pulumi.yaml says {expected!r}"


#: "128–10240 MB", "1–29 s", "1–128 letters": the allowed values of a field (en dash).
RANGE = re.compile(r"(\d+)–(\d+)")


def stated_range(row: ConfigRow) -> tuple[int, int] | None:
    found = RANGE.findall(row.meaning)
    assert len(found) <= 1, f"{CONFIGURATION} row `{row.key}` states more than one range: {found}"
    return (int(found[0][0]), int(found[0][1])) if found else None


RANGED = [row.field for row in ROWS if stated_range(row)]


def accepts(field: str, value: object) -> bool:
    try:
        resolve({field: value})
    except ChannelServerArgsError:
        return False
    return True


@pytest.mark.parametrize("field", RANGED)
def test_configuration_row_range_is_what_resolve_accepts(field: str) -> None:
    # GIVEN the range the table states (a number's, or a string's length)
    row = row_of(field)
    stated = stated_range(row)
    assert stated is not None  # RANGED holds only the rows that state one
    low, high = stated

    def value(n: int) -> object:
        return "a" * n if FIELD_TYPES[field] is str else n

    # WHEN resolve gets each edge and the value just beyond it
    verdicts = {n: accepts(field, value(n)) for n in (low - 1, low, high, high + 1)}

    # THEN it accepts exactly the edges
    expected = {low - 1: False, low: True, high: True, high + 1: False}
    wrong = {n: "accepted" if ok else "refused" for n, ok in verdicts.items() if ok != expected[n]}
    assert wrong == {}, f"{CONFIGURATION} row `{row.key}` says {low}–{high}, but resolve({field}=…) {wrong}"


def test_the_backend_row_states_its_timeout_range_and_default() -> None:
    from channel_server import backend

    row = row_of("backend")
    assert f"{backend.MIN_TIMEOUT_MS} to {backend.MAX_TIMEOUT_MS}, default {backend.DEFAULT_TIMEOUT_MS}" in row.meaning


def test_every_numeric_row_states_what_it_allows() -> None:
    numeric = [row for row in ROWS if FIELD_TYPES[row.field] in (int, float)]
    silent = [row.key for row in numeric if not stated_range(row) and "One of" not in row.meaning]
    assert silent == [], f"numeric rows in {CONFIGURATION} that state neither a range nor a list of values"


def test_log_retention_row_lists_cloudwatchs_values() -> None:
    row = row_of("log_retention_days")
    listed = re.search(r"One of [^:]*: ([\d, ]+)", row.meaning)
    assert listed, f"{CONFIGURATION} row `{row.key}` should list the accepted values after 'One of …:'"
    values = tuple(int(n) for n in listed.group(1).replace(",", " ").split())
    assert values == args_module.LOG_RETENTION_DAYS, f"{CONFIGURATION} row `{row.key}` lists {values}, args.LOG_RETENTION_DAYS is {args_module.LOG_RETENTION_DAYS}"


def test_architecture_row_names_the_accepted_architectures() -> None:
    row = row_of("lambda_architecture")
    assert tuple(code_spans(row.meaning)) == args_module.ARCHITECTURES, f"{CONFIGURATION} row `{row.key}`: {row.meaning!r}, args.ARCHITECTURES is {args_module.ARCHITECTURES}"


# --- figures in the docs -----------------------------------------------------------------------


def hours_and_minutes(seconds: int) -> tuple[str, str]:
    hours, rest = divmod(seconds, 3600)
    assert rest % 60 == 0
    return str(hours), str(rest // 60)


@dataclass(frozen=True)
class Figure:
    """A sentence that states a figure: ``pattern``'s groups must read ``value``
    wherever it matches in each of ``docs``, and (unless not ``required``) it must
    match in each."""

    docs: tuple[str, ...]
    pattern: str
    code: str  # where the figure lives, for the message
    value: tuple[str, ...]
    required: bool = True


def _figure(docs: str | tuple[str, ...], pattern: str, code: str, *value: object, required: bool = True) -> Figure:
    return Figure(docs if isinstance(docs, tuple) else (docs,), pattern, code, tuple(str(v) for v in value), required)


#: The bytes of a message frame around its data, with an empty channel id: a
#: senderId's 22 characters and a message id's 29 (every one is as long).
FRAME_AROUND_DATA = len(protocol.encode(protocol.message("", "s" * 22, None, protocol.new_message_id(0)))) - len("null")

FIGURES = [
    _figure(PROTOCOL, r"The frame around `data` takes (\d+) bytes plus the channelId's UTF-8 length, so with the "
            r"default limit and a 5-character channel the compact encoding of `data` may be up to (\d+) bytes",
            "protocol.message", FRAME_AROUND_DATA,
            protocol.API_GATEWAY_MAX_MESSAGE_BYTES - FRAME_AROUND_DATA - 5),
    _figure(PROTOCOL, r"A key publishes once within (\d+) minutes of its first use",
            "spec.IDEMPOTENCY_WINDOW_SECONDS", spec.IDEMPOTENCY_WINDOW_SECONDS // 60),
    _figure(DOCS, r"(\d+) s to connect and (\d+) s for an answer",
            "spec.CONNECT_TIMEOUT, spec.READ_TIMEOUT", spec.CONNECT_TIMEOUT, spec.READ_TIMEOUT),
    _figure(DOCS, r"[Cc]onnect(?:ion)? timeout (?:is |of )?(\d+) s", "spec.CONNECT_TIMEOUT", spec.CONNECT_TIMEOUT,
            required=False),
    _figure(DOCS, r"[Rr]ead timeout (?:is |of )?(\d+) s", "spec.READ_TIMEOUT", spec.READ_TIMEOUT, required=False),
    _figure(DOCS, r"at most (\d+) attempts per post", "sender.MAX_ATTEMPTS", sender.MAX_ATTEMPTS),
    _figure(ARCHITECTURE, r"5xx, (\d+) attempts in all", "sender.MAX_ATTEMPTS", sender.MAX_ATTEMPTS),
    _figure(FAILURES, r"429 \(LimitExceeded\) or 5xx, then success within (\d+) attempts",
            "sender.MAX_ATTEMPTS", sender.MAX_ATTEMPTS),
    _figure(FAILURES, r"still failing after (\d+) attempts", "sender.MAX_ATTEMPTS", sender.MAX_ATTEMPTS),
    _figure(DOCS, r"at most (\d+) (?:attempts )?per call", "app.DYNAMODB_MAX_ATTEMPTS", app.DYNAMODB_MAX_ATTEMPTS),
    _figure(FAILURES, r"Throttling or 5xx, then success within (\d+) attempts",
            "app.DYNAMODB_MAX_ATTEMPTS", app.DYNAMODB_MAX_ATTEMPTS),
    _figure(ARCHITECTURE, r"keeps up to (\d+) idle keep-alive connections", "app.DYNAMODB_POOL_CONNECTIONS", app.DYNAMODB_POOL_CONNECTIONS),
    _figure(ARCHITECTURE, r"up to `postsInFlight` \(default (\d+)\) at once", "spec.DEFAULT_POSTS_IN_FLIGHT",
            spec.DEFAULT_POSTS_IN_FLIGHT),
    _figure(DOCS, r"less than (\d+) s of the function's time is left",
            "sender.POST_RESERVE_SECONDS", sender.POST_RESERVE_SECONDS),
    _figure(FAILURES, r"before the (\d+) s reserve", "sender.POST_RESERVE_SECONDS", sender.POST_RESERVE_SECONDS),
    _figure(ARCHITECTURE, r"function's timeout, (\d+) s at most",
            "args.INTEGRATION_TIMEOUT_SECONDS", args_module.INTEGRATION_TIMEOUT_SECONDS),
    _figure(DOCS, r"up to (\d+) attempts in all", "store.JOIN_ATTEMPTS", store.JOIN_ATTEMPTS),
    _figure(FAILURES, r"after (\d+) cancelled attempts", "store.JOIN_ATTEMPTS", store.JOIN_ATTEMPTS),
    _figure(ARCHITECTURE, r"in batches of (\d+)", "store.BATCH_LIMIT", store.BATCH_LIMIT),
    _figure(ARCHITECTURE, r"unprocessed items sent again, (\d+) attempts in all",
            "store.BATCH_ATTEMPTS", store.BATCH_ATTEMPTS),
    _figure(FAILURES, r"at most (\d+) KB", "protocol.API_GATEWAY_MAX_MESSAGE_BYTES / 1024",
            f"{protocol.API_GATEWAY_MAX_MESSAGE_BYTES / 1024:g}"),
    _figure(DOCS, r"(\d+) h (\d+) min", "spec.ROW_TTL_SECONDS", *hours_and_minutes(spec.ROW_TTL_SECONDS)),
    _figure(ALL_DOCS, r"(\d+) h (\d+) min", "spec.ROW_TTL_SECONDS", *hours_and_minutes(spec.ROW_TTL_SECONDS),
            required=False),
    _figure(CONFIGURATION, r"limited to (\d+) characters", "protocol.MAX_CHANNEL_ID_LENGTH",
            protocol.MAX_CHANNEL_ID_LENGTH),
    _figure(ALL_DOCS, r"(?:limited to|at most) (\d+) characters", "protocol.MAX_CHANNEL_ID_LENGTH",
            protocol.MAX_CHANNEL_ID_LENGTH, required=False),
    # large channels
    _figure((CONFIGURATION, ARCHITECTURE, PROTOCOL), r"in chunks of (\d{1,3}(?:,\d{3})*)", "spec.FANOUT_CHUNK_MEMBERS",
            f"{spec.FANOUT_CHUNK_MEMBERS:,}"),
    _figure((CONFIGURATION, ARCHITECTURE, FAILURES), r"after (\d+) receives", "features.FANOUT_MAX_RECEIVES",
            features.FANOUT_MAX_RECEIVES),
    _figure((CONFIGURATION, ARCHITECTURE, FAILURES), r"kept (\d+) days", "features.DEAD_LETTER_RETENTION_SECONDS / 1 day",
            features.DEAD_LETTER_RETENTION_SECONDS // 86400),
    _figure((ARCHITECTURE, FAILURES), r"(\d+) × the function timeout", "features.VISIBILITY_TIMEOUTS",
            features.VISIBILITY_TIMEOUTS),
    _figure((CONFIGURATION, ARCHITECTURE), r"(?:up to|at most) (\d+) (?:fan-out invocations run )?at once", "spec.DEFAULT_FANOUT_CONCURRENCY",
            spec.DEFAULT_FANOUT_CONCURRENCY, required=False),
    # the account budget
    _figure(ARCHITECTURE, r"in a slot's last (\d+) ms", "sender.AHEAD_SECONDS", round(sender.AHEAD_SECONDS * 1000)),
    _figure(ARCHITECTURE, r"a counter for each tenth of the second \(`taken0` … `taken(\d)`\)",
            "spec.BUDGET_SLOTS_PER_SECOND - 1", spec.BUDGET_SLOTS_PER_SECOND - 1),
    _figure((CONFIGURATION, ARCHITECTURE), r"\((\d{1,3}(?:,\d{3})*) by default, half", "spec.DEFAULT_POSTS_PER_SECOND",
            f"{spec.DEFAULT_POSTS_PER_SECOND:,}"),
    _figure(CONFIGURATION, r"(\d{1,3}(?:,\d{3})*) members take (\d+) s at the default",
            "100,000 / spec.DEFAULT_POSTS_PER_SECOND", "100,000", 100_000 // spec.DEFAULT_POSTS_PER_SECOND),
    _figure(ARCHITECTURE, r"reaches at most (\d{1,3}(?:,\d{3})*) connections a minute",
            "spec.DEFAULT_POSTS_PER_SECOND × 60", f"{spec.DEFAULT_POSTS_PER_SECOND * 60:,}"),
    _figure(ARCHITECTURE, r"about (\d{1,3}(?:,\d{3})*) connections at `heartbeatIntervalMinutes` (\d) and "
            r"(\d{1,3}(?:,\d{3})*) at (\d)", "spec.DEFAULT_POSTS_PER_SECOND × 60 × minutes",
            f"{spec.DEFAULT_POSTS_PER_SECOND * 60 * spec.MIN_HEARTBEAT_MINUTES:,}", spec.MIN_HEARTBEAT_MINUTES,
            f"{spec.DEFAULT_POSTS_PER_SECOND * 60 * spec.MAX_HEARTBEAT_MINUTES:,}", spec.MAX_HEARTBEAT_MINUTES),
    _figure(ARCHITECTURE, r"retention (\d+) days", "spec.FANOUT_RETENTION_SECONDS / 1 day",
            spec.FANOUT_RETENTION_SECONDS // 86400),
    # history
    _figure(PROTOCOL, r"more than (\d+) messages came after `since` \(the oldest (\d+) are sent",
            "spec.MAX_REPLAY_MESSAGES", spec.MAX_REPLAY_MESSAGES, spec.MAX_REPLAY_MESSAGES),
    _figure((ARCHITECTURE, CONFIGURATION), r"`historySeconds` N \((\d+)–(\d+)", "spec.MAX_HISTORY_SECONDS",
            1, spec.MAX_HISTORY_SECONDS),
    _figure(ARCHITECTURE, r"(\d+) \(`spec.MAX_REPLAY_MESSAGES`\)", "spec.MAX_REPLAY_MESSAGES",
            spec.MAX_REPLAY_MESSAGES),
    _figure(ARCHITECTURE, r"`CHANNEL_DYNAMODB_READ_TIMEOUT` \((\d+) s", "server.EMBEDDED_DYNAMODB_READ_TIMEOUT",
            local_server.EMBEDDED_DYNAMODB_READ_TIMEOUT),
    # the Python client's defaults
    _figure(CLIENT, r"`ping_interval` seconds \((\d+) by default\)", "ChannelClient(ping_interval=…)",
            f"{CLIENT_DEFAULTS['ping_interval']:g}"),
    _figure(CLIENT, r"`reply_timeout` \((\d+) s", "ChannelClient(reply_timeout=…)", f"{CLIENT_DEFAULTS['reply_timeout']:g}"),
    _figure(CLIENT, r"`backoff_initial` ([\d.]+) s doubling up to `backoff_max` ([\d.]+) s",
            "ChannelClient(backoff_initial=…, backoff_max=…)",
            f"{CLIENT_DEFAULTS['backoff_initial']:g}", f"{CLIENT_DEFAULTS['backoff_max']:g}"),
    _figure(CLIENT, r"`max_queue` \((\d+)\)", "ChannelClient(max_queue=…)", CLIENT_DEFAULTS["max_queue"]),
    _figure(CLIENT, r"`max_in_flight` \((\d+)\)", "ChannelClient(max_in_flight=…)", CLIENT_DEFAULTS["max_in_flight"]),
    _figure(CLIENT, r"`max_incoming`, (\d{1,3}(?:,\d{3})*)", "ChannelClient(max_incoming=…)",
            f"{CLIENT_DEFAULTS['max_incoming']:,}"),
    # Pulumi.yaml's runtime, and the virtualenv tasks.py makes (the same one)
    _figure(README, r"`toolchain: (\S+)` and `virtualenv: (\S+)`", "Pulumi.yaml runtime.options",
            RUNTIME_OPTIONS["toolchain"], RUNTIME_OPTIONS["virtualenv"]),
    _figure(ARCHITECTURE, r"Python runtime \(toolchain (\S+), virtualenv ([^)\s]+)\)", "Pulumi.yaml runtime.options",
            RUNTIME_OPTIONS["toolchain"], RUNTIME_OPTIONS["virtualenv"]),
    _figure(ALL_DOCS, r"Python runtime \((?:toolchain )?(\w+), (?:virtualenv )?([^)\s]+?)/?\)",
            "Pulumi.yaml runtime.options", RUNTIME_OPTIONS["toolchain"], RUNTIME_OPTIONS["virtualenv"], required=False),
    _figure(README, r"the same `([^`]+)/` that `python3 tasks.py` creates", "tasks.VENV_NAME",
            RUNTIME_OPTIONS["virtualenv"]),
]


@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f"{f.code}: {f.pattern}")
def test_documented_figure_is_the_codes(figure: Figure) -> None:
    for doc in figure.docs:
        matches = list(re.finditer(figure.pattern, prose(read(doc))))
        assert matches or not figure.required, f"{doc}: no sentence matches {figure.pattern!r}; it should state {figure.code} = {figure.value}"
        for match in matches:
            assert match.groups() == figure.value, (
                f"{doc}: {match.group(0)!r} says {match.groups()}, but {figure.code} is {figure.value}"
            )


@pytest.mark.parametrize("doc", DOCS)
def test_retried_join_cancellations_are_the_stores(doc: str) -> None:
    sentences = re.findall(r"cancelled only by (.*?)[(.]", prose(read(doc)))
    assert sentences, f"{doc}: no sentence 'cancelled only by …' naming the retried cancellation codes"
    expected = sorted(store._RETRYABLE_CANCELLATIONS)
    for sentence in sentences:
        named = sorted(code_spans(sentence))
        assert named == expected, f"{doc}: 'cancelled only by {sentence}' names {named}; store retries {expected}"


MODULES = {"sender": sender, "app": app, "store": store, "spec": spec, "protocol": protocol}


@pytest.mark.parametrize("doc", DOCS)
def test_constants_the_docs_name_exist_where_they_say(doc: str) -> None:
    named = re.findall(r"`handlers/(\w+)\.py`, `(\w+)`", prose(read(doc)))
    assert named
    missing = [f"handlers/{module}.py {name}" for module, name in named if not hasattr(MODULES[module], name)]
    assert missing == [], f"{doc} names constants the code does not have"


def test_architecture_lists_the_functions_environment() -> None:
    listed = re.search(r"settings from its environment: (.*?)\. ", prose(read(ARCHITECTURE)))
    assert listed, f"{ARCHITECTURE}: no sentence 'settings from its environment: …'"
    expected = sorted(value for name, value in vars(spec).items() if name.startswith("ENV_"))
    assert sorted(code_spans(listed.group(1))) == expected, f"{ARCHITECTURE} lists the environment wrongly; spec has {expected}"


def test_architecture_permissions_table_is_spec_routes_and_fanout() -> None:
    (table,) = tables(section(read(ARCHITECTURE), "## Why one function and one role per route"))
    documented = {}
    for function, on_table, on_index, on_heartbeat_index, on_queue, posts in table:
        queue_actions = [a for a in code_spans(on_queue) if a != "SendMessageBatch"]  # named as covered
        documented[function.strip("`")] = (
            sorted(f"dynamodb:{action}" for action in code_spans(on_table)),
            sorted(f"dynamodb:{action}" for action in code_spans(on_index)),
            sorted(f"dynamodb:{action}" for action in code_spans(on_heartbeat_index)),
            sorted(f"sqs:{action}" for action in queue_actions),
            "yes" in posts,  # "yes", or "no; with history on, yes (…)"
        )
    functions = {**{route.key: route for route in spec.ROUTES}, "fan-out": spec.FANOUT, "heartbeat": spec.HEARTBEAT}
    expected = {
        key: (sorted(set(f.table_actions + f.heartbeat_table_actions + f.history_table_actions)),
              sorted(set(f.index_actions)), sorted(set(f.heartbeat_index_actions)), sorted(set(f.queue_actions)),
              f.posts or f.history_posts)
        for key, f in functions.items()
    }
    assert documented == expected, f"{ARCHITECTURE} permissions table differs from spec.ROUTES and spec.FANOUT"


def test_architecture_example_rows_expire_after_the_row_ttl() -> None:
    text = section(read(ARCHITECTURE), "## Data model")
    found = re.search(r"at epoch (\d+)", prose(text))
    assert found, f"{ARCHITECTURE}'s data model names the epoch of its example"
    epoch = int(found.group(1))
    assert "Ten minutes later" in prose(text)
    first, second = tables(text)
    for joined_at, table in ((epoch, first), (epoch + 10 * 60, second)):
        expires = {int(row[-1]) for row in table}
        assert expires == {joined_at + spec.ROW_TTL_SECONDS}, (
            f"{ARCHITECTURE}: example rows of the join at {joined_at} expire at {expires}, "
            f"not {joined_at} + spec.ROW_TTL_SECONDS = {joined_at + spec.ROW_TTL_SECONDS}"
        )



# --- docs/local-mode.md: local mode's options ------------------------------------------------


def test_the_local_mode_page_lists_every_option_with_its_default():
    from channel_server.local.cli import build_parser

    flags = {
        action.option_strings[0]: action
        for action in build_parser()._actions
        if action.option_strings and action.dest != "help"
    }
    table = {}
    for line in section(read(LOCAL_MODE), "## Options").splitlines():
        if line.startswith("| `--"):
            flag, default = cells(line)[:2]
            table[flag.strip("`").split()[0]] = default
    assert sorted(table) == sorted(flags), f"{LOCAL_MODE}'s options and --help name different flags"
    for flag, action in flags.items():
        if action.default is None:
            continue  # derived (the program, its stack, the embedded DynamoDB): said in words
        if isinstance(action.default, bool):  # a switch
            code = "on" if action.default else "off"
        elif isinstance(action.default, float):
            code = f"{action.default:g}"
        else:
            code = str(action.default)
        assert table[flag] == f"`{code}`", f"{LOCAL_MODE} says {flag} defaults to {table[flag]}; the code says {code}"


def test_pulumi_yamls_virtualenv_is_the_one_tasks_py_makes() -> None:
    # the README's "the same .venv/ that python3 tasks.py creates" (a figure above) says so
    venv_name = re.search(r'^VENV_NAME = "([^"]+)"$', read("tasks.py"), re.M)
    assert venv_name, "tasks.py: no line VENV_NAME = \"…\""
    assert venv_name.group(1) == RUNTIME_OPTIONS["virtualenv"], (
        f"tasks.py makes {venv_name.group(1)}/, but Pulumi.yaml's virtualenv is {RUNTIME_OPTIONS['virtualenv']}"
    )


# --- figures measured here -------------------------------------------------------------------


def zipped_kb(files: dict[str, str]) -> float:
    """The files zipped as the archive is (deflated), in KB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, text in files.items():
            zipped.writestr(name, text)
    return len(buffer.getvalue()) / 1024


def test_the_archive_sizes_the_docs_state_are_measured() -> None:
    # GIVEN the handler archive as the component builds it, and the same modules as written
    shipped = zipped_kb(archive.handler_sources())
    as_written = zipped_kb({name: path.read_text(encoding="utf-8") for name, path in archive.handler_files().items()})

    # THEN the sentence that states both is within a KB of each ("about N KB")
    stated = re.search(r"The archive is about (\d+) KB zipped, against about (\d+) KB for the sources as written",
                       prose(read(ARCHITECTURE)))
    assert stated, f"{ARCHITECTURE}: no sentence 'The archive is about N KB zipped, against about M KB for the sources as written'"
    for said, measured, what in ((stated.group(1), shipped, "the archive"), (stated.group(2), as_written, "the sources")):
        assert abs(int(said) - measured) < 1, f"{ARCHITECTURE} says {what} is about {said} KB zipped; it is {measured:.1f} KB"

    # AND the budget it states is the one tests/test_archive.py holds it to
    from test_archive import ARCHIVE_BUDGET_KB

    assert f"its budget is {ARCHIVE_BUDGET_KB} KB" in prose(read(ARCHITECTURE))

    # AND no page states another size of it
    for doc in ALL_DOCS:
        for said in re.findall(r"(\d+(?:\.\d+)?) KB zipped", prose(read(doc))):
            assert abs(float(said) - shipped) < 1, f"{doc} says the archive is {said} KB zipped; it is {shipped:.1f} KB"


@pytest.mark.parametrize("doc", ALL_DOCS)
def test_no_page_states_a_test_count(doc: str) -> None:
    # the count changes with every test added; pytest reports it, the docs need not
    counts = re.findall(r"\b\d[\d,]* tests\b", prose(read(doc)))
    assert counts == [], f"{doc} states a test count: {counts}"


def test_the_port_in_use_message_quoted_is_local_modes() -> None:
    message = f"cannot start: {local_server.PortInUse('127.0.0.1', 8080)}"
    for doc in (README, LOCAL_MODE):
        assert message in prose(read(doc)), f"{doc} should quote local mode's message for a taken port: {message!r}"


# --- the start-up transcript --------------------------------------------------------------------


START_COMMAND = "$ python3 tasks.py local"
READY_LINE = "Ctrl-C to stop."


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Every fenced code block: its language and its lines."""
    blocks: list[tuple[str, list[str]]] = []
    language: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, lines))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def startup_transcript(doc: str) -> list[str]:
    """The lines a doc shows local mode printing at start: a console block that
    begins with ``$ python3 tasks.py local``, up to ``Ctrl-C to stop.``."""
    for language, lines in fenced_blocks(read(doc)):
        if language in ("console", "text") and lines[:1] == [START_COMMAND] and READY_LINE in lines:
            return lines[1:lines.index(READY_LINE) + 1]
    pytest.fail(f"{doc}: no console block starting with {START_COMMAND!r} that shows {READY_LINE!r}")


def normalized(line: str) -> str:
    """A start-up line without what differs between runs and machines: the time,
    ports, the program's folder, the table's random suffix."""
    line = re.sub(r"^\d\d:\d\d:\d\d ", "", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    line = re.sub(r"running \S*/__main__\.py", "running …/__main__.py", line)
    line = re.sub(r"-connections-[0-9a-f]+\)", "-connections-…)", line)
    return line.rstrip()


# test_doc_commands.py runs the quickstart's command and compares what it
# printed with these transcripts (startup_transcript, normalized).


# --- links ------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The ``#anchor`` GitHub gives a heading: lower case, Markdown's code and
    emphasis marks and every character but letters, digits, ``-``, ``_`` and
    spaces dropped, spaces turned into ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(doc: str) -> set[str]:
    """Every heading's anchor in a Markdown file (a repeated heading gets -1, -2, …)."""
    found: set[str] = set()
    seen: Counter = Counter()
    fenced = False
    for line in read(doc).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = re.match(r"#{1,6} (.*)", line)
        if heading and not fenced:
            anchor = github_anchor(heading.group(1).strip())
            found.add(anchor if not seen[anchor] else f"{anchor}-{seen[anchor]}")
            seen[anchor] += 1
    return found


def relative_links(doc: str) -> list[str]:
    """The targets of a file's Markdown links and images that are not URLs
    (outside code blocks and code spans)."""
    targets = []
    fenced = False
    for line in read(doc).splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        targets.extend(re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", line))
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_link_reader_finds_links_and_anchors() -> None:
    # a check that reads nothing would pass: the README has links of both kinds
    assert "#try-it-locally" in relative_links(README)
    assert "docs/local-mode.md" in relative_links(README)
    assert github_anchor("From TypeScript, Go, C#, YAML or another Python program") == (
        "from-typescript-go-c-yaml-or-another-python-program")
    assert github_anchor("`$connect` authorization") == "connect-authorization"
    assert github_anchor("4.1 Every reason string") == "41-every-reason-string"


@pytest.mark.parametrize("doc", ALL_DOCS)
def test_every_relative_link_and_anchor_resolves(doc: str) -> None:
    broken = []
    for target in relative_links(doc):
        path, _, anchor = target.partition("#")
        file = (ROOT / doc).parent / path if path else ROOT / doc
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(str(file.resolve().relative_to(ROOT))):
            broken.append(f"{target}: no heading with the anchor #{anchor}")
    assert broken == [], f"{doc} has links that do not resolve"


# --- option tables stay tables -----------------------------------------------------------------


#: The longest explanation a table cell may hold; longer ones go in prose below the table.
MAX_CELL = 120


def cell_text(cell: str) -> str:
    """A cell as it reads: links as their text, a list of allowed values as "One of …"."""
    text = re.sub(r"\]\([^)]*\)", "]", cell)
    return re.sub(r"(One of [^:]*): [\d, ]+", r"\1: …", text)


@pytest.mark.parametrize(("doc", "heading"), [(CONFIGURATION, "## Configuration reference"), (LOCAL_MODE, "## Options")])
def test_option_table_cells_stay_short(doc: str, heading: str) -> None:
    (table,) = tables(section(read(doc), heading))
    long_cells = [f"{row[0]}: {len(cell_text(cell))} characters" for row in table for cell in row[1:]
                  if len(cell_text(cell)) > MAX_CELL]
    assert long_cells == [], f"{doc}, {heading!r}: cells over {MAX_CELL} characters; say more in prose below the table"



def test_the_architecture_opens_with_the_map_of_the_tree_as_the_package_maps_it() -> None:
    import tomllib

    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    (table,) = tables(section(read(ARCHITECTURE), "## The tree"))
    mapped = {}
    for folders, import_path, _ in table:
        for folder in code_spans(folders):
            mapped[folder.rstrip("/")] = code_spans(import_path)
    # every package is mapped as pyproject.toml maps it, and every folder named exists
    assert {folder: paths for folder, paths in mapped.items() if paths} == {
        folder: [package] for package, folder in package_dir.items()}
    assert all((ROOT / folder).is_dir() for folder in mapped)
    # and it is the page's first section
    first = re.search(r"^## .*$", read(ARCHITECTURE), re.M)
    assert first and first.group(0) == "## The tree"


def module_names(folder: str) -> set[str]:
    return {path.stem for path in (ROOT / folder).glob("*.py")} - {"__init__", "__main__"}


def tabled_modules(heading: str, index: int) -> set[str]:
    """The modules the ``index``-th table under ``heading`` names in its first column."""
    return {name for row in tables(section(read(ARCHITECTURE), heading))[index] for name in code_spans(row[0])}


def test_every_module_is_in_its_table_of_the_architecture() -> None:
    assert tabled_modules("## Components", 0) == module_names("components")
    assert tabled_modules("## Components", 1) == module_names("handlers")
    assert tabled_modules("## Local mode's modules", 0) == module_names("local")
