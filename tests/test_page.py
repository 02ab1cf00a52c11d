"""Local mode's page (``GET /``, ``local/page/``): served with its headers, and
driven in headless Chromium against local mode itself: two pages join a channel
and talk, a ping gets its pong, a refused join shows its reason.

The browser is Debian's chromium and its chromedriver (``apt-get install
chromium chromium-driver``; ``python3 tasks.py test`` installs them when it can),
never one Selenium Manager downloads. Every wait is for something the page
shows, bounded by TIMEOUT only so that a broken page fails instead of hanging.

With ``CHANNEL_SERVER_SCREENSHOT=path.png`` set, the conversation test saves both
pages side by side there (README's ``docs/page.png``)."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode, urljoin, urlsplit

import boto3
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from channel_server.local.server import running
from support.aws import FAKE_CREDENTIALS, REGION
from support.local_mode import served_world

TIMEOUT = 20
#: How often a wait looks at the page again (WebDriverWait's default is 0.5 s).
POLL = 0.02
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server",
]
#: Each page's viewport, and so half the screenshot.
PAGE_WIDTH, PAGE_HEIGHT = 600, 760
SCREENSHOT_ENV = "CHANNEL_SERVER_SCREENSHOT"


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with running(port=0, world=served_world()) as server:
        yield server


def page_url(server: Any) -> str:
    assert server.page_url == f"http://127.0.0.1:{server.port}/"
    return server.page_url


# --- over plain HTTP ---------------------------------------------------------------------


def get(server: Any, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


class References(HTMLParser):
    """The files a page loads (scripts, stylesheets, icons) and its <meta> names."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[str] = []
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and (src := found.get("src")):
            self.files.append(src)
        elif tag == "link" and (href := found.get("href")):
            self.files.append(href)
        elif tag == "meta" and (name := found.get("name")):
            self.meta[name] = found.get("content") or ""


def csp(headers: http.client.HTTPMessage) -> dict[str, list[str]]:
    policy = headers["Content-Security-Policy"] or ""
    directives = (d.split() for d in policy.split(";") if d.strip())
    return {name: values for name, *values in directives}


def assert_page_headers(headers: http.client.HTTPMessage, content_type: str) -> None:
    assert headers["Content-Type"] == f"{content_type}; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    policy = csp(headers)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert sorted(policy["connect-src"]) == ["ws:", "wss:"]


def test_the_page_and_its_files_are_served_with_their_headers(server):
    # WHEN the page is fetched
    status, headers, body = get(server, "/")

    # THEN it is HTML, not cached, limited to its own script and style and to WebSockets
    assert status == 200
    assert_page_headers(headers, "text/html")
    page = References()
    page.feed(body.decode("utf-8"))
    # AND it was told the stage, so it defaults to ws://<host>/<stage>
    assert page.meta["channel-server-stage"] == server.stage
    # AND everything it loads comes from local mode itself, which serves it
    served = [ref for ref in page.files if not ref.startswith("data:")]
    assert {Path(ref).suffix for ref in served} == {".js", ".css"}
    for ref in served:
        assert not urlsplit(ref).scheme and not urlsplit(ref).netloc, ref
        status, headers, body = get(server, urljoin("/", ref))
        assert status == 200, ref
        assert_page_headers(headers, {".js": "text/javascript", ".css": "text/css"}[Path(ref).suffix])
        assert body


def test_the_page_shadows_neither_the_websocket_endpoint_nor_the_management_api(server):
    # a plain GET of the WebSocket endpoint is still refused as API Gateway does
    status, _, body = get(server, f"/{server.stage}")
    assert (status, json.loads(body)) == (426, {"message": "Upgrade Required"})
    # the management API still answers (403: this request is not SigV4-signed)
    status, _, _ = get(server, f"/{server.stage}/@connections/AbCdEfGhIjKlMnO=")
    assert status == 403
    # and nothing else is served
    assert get(server, "/index.html")[0] == 404
    assert get(server, "/other.js")[0] == 404


# --- in a browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.skip(f"needs Debian's chromium and its chromedriver ({', '.join(missing)} missing): "
                    "apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for pages()
    # a path of its own: Selenium Manager is never asked (and never downloads)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def set_viewport(driver: Any, width: int, height: int) -> None:
    """Size the current window so that its viewport is ``width`` × ``height``."""
    driver.set_window_size(width, height)
    inner_width, inner_height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    if (inner_width, inner_height) != (width, height):
        driver.set_window_size(2 * width - inner_width, 2 * height - inner_height)


class Page:
    """The page in a window of its own."""

    def __init__(self, driver: Any, url: str):
        self.driver = driver
        driver.switch_to.new_window("window")
        self.handle = driver.current_window_handle
        set_viewport(driver, PAGE_WIDTH, PAGE_HEIGHT)
        driver.get(url)

    def focus(self) -> "Page":
        self.driver.switch_to.window(self.handle)
        return self

    def element(self, id: str) -> Any:
        return self.focus().driver.find_element(By.ID, id)

    def value(self, id: str) -> str:
        return self.element(id).get_attribute("value")

    def text(self, id: str) -> str:
        return self.element(id).text

    def enabled(self, id: str) -> bool:
        return self.element(id).is_enabled()

    def fill(self, id: str, text: str) -> None:
        field = self.element(id)
        if field.get_attribute("value") != text:
            field.clear()
            field.send_keys(text)

    def click(self, id: str) -> None:
        self.wait(lambda: self.enabled(id), f"#{id} enabled")
        self.element(id).click()

    def log(self) -> list[dict]:
        """The log's entries: kind (sent, received, event), type, summary, the
        raw frame (or None) and the messageId shown (its element's full id,
        short text and title, or None)."""
        return self.focus().driver.execute_script(
            "return Array.from(document.querySelectorAll('#log > li'), li => {"
            "  const raw = li.querySelector('.raw'), id = li.querySelector('.message-id');"
            "  return {kind: li.dataset.kind, type: li.dataset.type, summary: li.querySelector('.summary').textContent,"
            "          raw: raw ? raw.textContent : null,"
            "          messageId: id ? {id: id.dataset.messageId, text: id.textContent, title: id.title} : null};"
            "})"
        )

    def entries(self, type: str, kind: str = "received") -> list[str]:
        return [e["summary"] for e in self.log() if e["type"] == type and e["kind"] == kind]

    def wait(self, condition, what: str) -> Any:
        self.focus()
        try:
            return WebDriverWait(self.driver, TIMEOUT, poll_frequency=POLL).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"the page never showed {what}; its log:\n" +
                                 "\n".join(f"  {e['kind']} {e['type']}: {e['summary']}" for e in self.log())) from None

    def wait_for(self, type: str, containing: str = "", kind: str = "received") -> str:
        """The first ``type`` entry of the log whose summary contains ``containing``."""
        def found() -> str | None:
            return next((s for s in self.entries(type, kind) if containing in s), None)

        return self.wait(found, f"a {kind} {type} entry containing {containing!r}")

    def connect(self) -> None:
        self.click("connect")
        self.wait_for("open", kind="event")

    def join(self, channel: str) -> str:
        """Join ``channel``; the senderId the page shows."""
        self.fill("channel", channel)
        self.click("join")
        summary = self.wait_for("joinSuccess")
        sender_id = self.text("sender-id")
        assert sender_id and summary == f"joined {channel} as {sender_id}"
        return sender_id

    def publish(self, text: str) -> None:
        self.fill("text", text)
        self.click("publish")


@pytest.fixture
def pages(driver: Any, server: Any) -> Iterator[Any]:
    """``pages(query="")``: a new window showing the page; closed after the
    test, which fails if the console shows an error (a script error, or
    something the Content-Security-Policy blocked)."""
    opened: list[Page] = []

    def open_page(query: str = "") -> Page:
        page = Page(driver, page_url(server) + query)
        opened.append(page)
        return page

    yield open_page
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
              and "WebSocket connection to" not in entry["message"]]  # a test's failed connection
    for page in opened:
        page.focus().driver.close()
    driver.switch_to.window(driver.window_handles[0])
    assert errors == []


def test_two_pages_talk_through_a_channel(server, pages):
    # GIVEN two pages, each defaulting to local mode's WebSocket URL
    alice, bob = pages(), pages()
    assert alice.value("url") == bob.value("url") == server.url

    # WHEN both connect and join the same channel
    alice.connect()
    bob.connect()
    assert not bob.enabled("publish")  # not before its joinSuccess
    alice_id = alice.join("lobby")
    bob_id = bob.join("lobby")
    assert alice_id != bob_id

    # AND one publishes
    bob.publish("hi from B")

    # THEN the other shows the text with the publisher's senderId
    assert alice.wait_for("message", "hi from B") == f"{bob_id} in lobby: hi from B"
    # AND the publisher its publishSuccess
    assert bob.wait_for("publishSuccess") == "published"

    # AND the other way round
    alice.publish("hello B")
    assert bob.wait_for("message", "hello B") == f"{alice_id} in lobby: hello B"
    alice.wait_for("publishSuccess")

    # AND a ping shows its pong
    bob.click("ping")
    assert bob.wait_for("pong").startswith("pong 1 after ")

    # AND nobody got their own message back
    assert alice.entries("message") == [f"{bob_id} in lobby: hi from B"]
    assert bob.entries("message") == [f"{alice_id} in lobby: hello B"]

    # AND each message shows its messageId, compactly, next to its line
    for page in (alice, bob):
        (entry,) = [e for e in page.log() if e["type"] == "message"]
        message_id = json.loads(entry["raw"])["messageId"]
        assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{16}", message_id)
        assert entry["messageId"] == {"id": message_id, "text": f"#…{message_id[-8:]}",
                                      "title": f"messageId {message_id}"}
        assert message_id not in entry["summary"]

    # AND every request carried its own requestId, which its reply echoed
    for page in (alice, bob):
        sent = [(e["type"], json.loads(e["summary"])) for e in page.log() if e["kind"] == "sent"]
        ids = [frame["requestId"] for _, frame in sent]
        assert all(re.fullmatch(r"p[0-9]+", i) for i in ids) and len(set(ids)) == len(ids), ids
        assert {t for t, _ in sent} >= ({"join", "publish", "ping"} if page is bob else {"join", "publish"})
        replies = [json.loads(e["raw"]) for e in page.log() if e["kind"] == "received"
                   and e["type"] in ("joinSuccess", "publishSuccess", "pong")]
        assert [reply["requestId"] for reply in replies] == ids
        assert page.entries("unpaired reply", kind="event") == []

    screenshot = os.environ.get(SCREENSHOT_ENV)
    if screenshot:
        save_side_by_side([alice, bob], Path(screenshot))


def test_a_refused_join_shows_its_reason_and_a_close_its_code(pages):
    # GIVEN a connected page
    page = pages()
    page.connect()

    # WHEN it joins a reserved channel id
    page.fill("channel", "$bad")
    page.click("join")

    # THEN it shows the joinFailure's reason, and publishing stays off
    assert page.wait_for("joinFailure") == "channelId must not start with '$' (reserved)"
    assert page.wait(lambda: page.enabled("join"), "join enabled again")
    assert not page.enabled("publish")

    # AND a disconnect shows the close code
    page.click("disconnect")
    assert page.wait_for("close", kind="event").startswith("closed with code 1000 (normal closure)")
    assert page.enabled("connect") and not page.enabled("join")


def test_what_the_server_pushes_is_shown_as_text_and_heartbeats_are_only_counted(server, pages):
    # GIVEN a connected page, and its connection's id
    before = set(server.gateway.connections)
    page = pages()
    page.connect()
    (connection_id,) = page.wait(lambda: set(server.gateway.connections) - before or None, "a new connection")
    management = boto3.client("apigatewaymanagementapi", endpoint_url=server.management_url, region_name=REGION,
                              **FAKE_CREDENTIALS)

    # WHEN the server sends it heartbeats, API Gateway's error frame, a partial
    # publishFailure, and a message made of markup, in this order
    markup = "<img src=x onerror=document.body.remove()><b>bold</b>"
    for frame in [
        {"type": "heartbeat"},
        {"message": "Internal server error", "connectionId": connection_id, "requestId": "AbCdEfGhIjKlMnO="},
        {"type": "heartbeat"},
        {"type": "publishFailure", "data": "could not deliver to 1 of 3 members; the others received the message",
         "delivered": 2, "failed": 1},
        {"type": "message", "channelId": "<i>lobby</i>", "senderId": markup, "messageId": "<u>id</u>", "data": markup},
        {"type": "pong", "requestId": "nobody-asked"},
    ]:
        management.post_to_connection(ConnectionId=connection_id, Data=json.dumps(frame).encode())

    # THEN each shows as text (the markup too, as text, never as elements)
    assert page.wait_for("message") == f"{markup} in <i>lobby</i>: {markup}"
    assert page.entries("API Gateway error") == ["Internal server error"]
    assert page.entries("publishFailure") == [
        "could not deliver to 1 of 3 members; the others received the message (delivered 2, failed 1)"]
    assert page.driver.find_elements(By.CSS_SELECTOR, "#log img, #log b, #log i, #log u") == []
    # AND the messageId too, as text
    (entry,) = [e for e in page.log() if e["type"] == "message"]
    assert entry["messageId"] == {"id": "<u>id</u>", "text": "#<u>id</u>", "title": "messageId <u>id</u>"}
    # AND a reply to no request of this page's is logged as such, and the page goes on
    assert page.wait_for("unpaired reply", "nobody-asked", kind="event") == (
        "a pong with requestId nobody-asked, which answers no request in flight")
    assert page.entries("pong") == ["pong"]
    assert page.enabled("join")
    # AND the heartbeats are counted, not logged
    assert page.text("heartbeats") == "2"
    assert page.entries("heartbeat") == []


def test_a_url_parameter_points_the_page_elsewhere_and_a_failed_connection_shows_its_close(pages):
    # GIVEN the page told to use another URL, where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"ws://127.0.0.1:{probe.getsockname()[1]}/prod"
    page = pages("?" + urlencode({"url": nowhere}))
    assert page.value("url") == nowhere

    # WHEN it connects
    page.click("connect")

    # THEN the failure shows, with the close code the browser reports
    assert page.wait_for("close", kind="event").startswith("closed with code 1006 ")
    assert page.entries("connecting", kind="event") == [f"connecting to {nowhere}"]
    assert page.enabled("connect") and not page.enabled("join")


# --- the README's screenshot ---------------------------------------------------------------


def save_side_by_side(pages: list[Page], path: Path) -> None:
    """One PNG of ``pages`` side by side: each window's screenshot, laid out by
    a blank page in another window and captured there (no image library)."""
    shots = [page.focus().driver.get_screenshot_as_base64() for page in pages]
    driver = pages[0].driver
    gap = 16
    width, height = len(shots) * (PAGE_WIDTH + gap) + gap, PAGE_HEIGHT + 2 * gap
    driver.switch_to.new_window("window")
    try:
        driver.get("about:blank")
        set_viewport(driver, width, height)
        driver.execute_script(
            """
            document.body.style.cssText = `margin: 0; display: flex; gap: ${arguments[1]}px;
                padding: ${arguments[1]}px; background: #e4e7ec;`;
            for (const shot of arguments[0]) {
              const img = document.createElement("img");
              img.src = "data:image/png;base64," + shot;
              img.style.cssText = "display: block; border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,.25);";
              document.body.append(img);
            }
            """,
            shots, gap,
        )
        WebDriverWait(driver, TIMEOUT, poll_frequency=POLL).until(
            lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth)"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.close()
        pages[0].focus()
