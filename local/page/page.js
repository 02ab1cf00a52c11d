// A page to try channel-server's wire protocol (docs/protocol.md) by hand.
// Everything shown goes through textContent: frames are data, never markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    url: $("url"), connect: $("connect"), disconnect: $("disconnect"),
    channel: $("channel"), join: $("join"), text: $("text"), publish: $("publish"), ping: $("ping"),
    state: $("state"), membership: $("membership"), channelId: $("channel-id"), senderId: $("sender-id"),
    log: $("log"), heartbeats: $("heartbeats"), clear: $("clear"),
    presence: $("presence"), members: $("members"),
  };

  const CLOSE_CODES = {
    1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
    1005: "no status code", 1006: "closed abnormally, without a close frame", 1008: "policy violation",
    1009: "message too big", 1011: "server error",
  };
  // The replies, each to the request of its kind. Every request carries a
  // requestId ("p1", "p2", …) that its reply echoes (§3): a reply is paired by
  // it, and only a reply without one (an older server) is paired by order. The
  // page still keeps one request in flight at a time, so its buttons wait.
  const ANSWERS = { joinSuccess: "join", joinFailure: "join", publishSuccess: "publish",
                    publishFailure: "publish", pong: "ping", error: "any", members: "members" };
  const MAX_ENTRIES = 500;
  const MAX_SHOWN = 2000;

  let ws = null;        // the current WebSocket, until its close event
  let joined = null;    // {channelId, senderId} of the current membership
  let pending = null;   // the request waiting for its reply: {kind, requestId}, kind "join", "publish", "ping" or "members"
  let requests = 0;     // requestIds sent on this page: "p1", "p2", …
  let heartbeats = 0;
  const members = new Map();  // presence (§12): senderId -> principalId of the channel's listed members
  let following = true;  // keep the log scrolled to its newest entry, until the reader scrolls up
  let pings = 0;
  const pingsSent = new Map();  // ping number -> performance.now() when sent

  function defaultUrl() {
    const override = new URLSearchParams(location.search).get("url");
    if (override) return override;
    const meta = document.querySelector('meta[name="channel-server-stage"]');
    const stage = meta ? meta.content : "";
    if (!stage || !location.host) return "";
    return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/${encodeURIComponent(stage)}`;
  }

  function shown(text) {
    return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}… (${text.length} characters)` : text;
  }

  function asText(value) {
    if (value === undefined) return "(none)";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  // One log line: time, a badge, a summary made of text parts (a part [text,
  // "sender"] gets its own element), a message's id when there is one, and the
  // raw frame when there is one.
  function log(kind, type, tone, parts, raw, messageId) {
    const entry = document.createElement("li");
    entry.className = `entry ${kind} ${tone}`;
    entry.dataset.kind = kind;
    entry.dataset.type = type;
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour12: false });
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = kind === "sent" ? `→ ${type}` : kind === "received" ? `← ${type}` : type;
    const summary = document.createElement("span");
    summary.className = "summary";
    for (const part of parts) {
      if (Array.isArray(part)) {
        const span = document.createElement("span");
        span.className = part[1];
        span.textContent = shown(part[0]);
        summary.append(span);
      } else {
        summary.append(shown(part));
      }
    }
    entry.append(time, badge, summary);
    if (messageId !== undefined) {  // compact: its last characters, the whole id on hover
      const id = document.createElement("span");
      id.className = "message-id";
      id.dataset.messageId = messageId;
      id.title = `messageId ${messageId}`;
      id.textContent = messageId.length > 12 ? `#…${messageId.slice(-8)}` : `#${messageId}`;
      entry.append(id);
    }
    if (raw !== undefined) {
      const code = document.createElement("code");
      code.className = "raw";
      code.textContent = shown(raw);
      entry.append(code);
    }
    ui.log.append(entry);
    while (ui.log.children.length > MAX_ENTRIES) ui.log.firstElementChild.remove();
    if (following) ui.log.scrollTop = ui.log.scrollHeight;
  }

  function setText(element, text) {  // unchanged text stays put, so the status is not announced again
    if (element.textContent !== text) element.textContent = text;
  }

  function render() {
    const state = ws ? ws.readyState : WebSocket.CLOSED;
    const open = state === WebSocket.OPEN;
    ui.url.readOnly = ws !== null;
    ui.connect.disabled = ws !== null;
    ui.disconnect.disabled = ws === null || state === WebSocket.CLOSING;
    ui.join.disabled = !open || pending !== null;
    ui.ping.disabled = !open || pending !== null;
    ui.publish.disabled = !open || pending !== null || joined === null;
    ui.state.dataset.state = ["connecting", "open", "closing", "closed"][state];
    setText(ui.state, ["connecting…", "connected", "closing…", "disconnected"][state]);
    ui.membership.hidden = joined === null;
    setText(ui.channelId, joined ? joined.channelId : "");
    setText(ui.senderId, joined ? joined.senderId : "");
    renderMembers();
  }

  function renderMembers() {  // presence: the list, shown while watching
    ui.presence.hidden = !(joined && joined.watching);
    ui.members.replaceChildren(...[...members].map(([senderId, principalId]) => {
      const item = document.createElement("li");
      item.textContent = principalId ? `${senderId} (${principalId})` : senderId;
      return item;
    }));
  }

  function presenceFrame(frame, text) {  // memberJoined, memberLeft, members (docs/protocol.md §12)
    const senderId = asText(frame.senderId);
    const who = frame.principalId === undefined ? [[senderId, "sender"]] : [[senderId, "sender"], ` (${asText(frame.principalId)})`];
    if (frame.type === "members") {
      for (const member of Array.isArray(frame.members) ? frame.members : []) {
        members.set(asText(member.senderId), member.principalId === undefined ? "" : asText(member.principalId));
      }
      log("received", frame.type, "good", [`${members.size} members listed`], text);
      if (typeof frame.cursor === "string") send("members", { type: "members", cursor: frame.cursor });
    } else if (frame.type === "memberJoined") {
      members.set(senderId, frame.principalId === undefined ? "" : asText(frame.principalId));
      log("received", frame.type, "good", [...who, " joined"], text);
    } else {
      members.delete(senderId);
      log("received", frame.type, "plain", [...who, " left"], text);
    }
  }

  function send(kind, frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN || pending !== null) return false;
    requests += 1;
    const requestId = `p${requests}`;
    const text = JSON.stringify({ ...frame, requestId });
    ws.send(text);
    pending = { kind, requestId };
    log("sent", frame.type, "plain", [text]);
    render();
    return true;
  }

  // A reply: it answers the request in flight when it echoes that request's
  // requestId, or carries none (a server without request ids, or an error that
  // could not name one). A requestId the page is not waiting for is logged, and
  // the request in flight keeps waiting.
  function paired(frame) {
    const requestId = frame.requestId;
    if (requestId === undefined || (pending !== null && requestId === pending.requestId)) {
      pending = null;
      return;
    }
    const waiting = pending ? `; waiting for ${pending.requestId}` : "";
    log("event", "unpaired reply", "bad",
        [`a ${asText(frame.type)} with requestId ${asText(requestId)}, which answers no request in flight${waiting}`]);
  }

  function receive(text) {
    if (typeof text !== "string") {
      log("received", "binary", "bad", [`a binary frame of ${text.byteLength} bytes`]);
      return;
    }
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      log("received", "not JSON", "bad", ["a frame that is not JSON"], text);
      return;
    }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      log("received", "not an object", "bad", ["a frame that is not a JSON object"], text);
      return;
    }
    if (frame.type === undefined) {
      // API Gateway's own error frame (§9): it takes the place of the reply
      const instead = pending ? ` (in place of the reply to your ${pending.kind} ${pending.requestId})` : "";
      pending = null;
      log("received", "API Gateway error", "bad", [`${asText(frame.message)}${instead}`], text);
      render();
      return;
    }
    if (frame.type === "heartbeat") {
      heartbeats += 1;
      ui.heartbeats.textContent = String(heartbeats);
      return;
    }
    if (Object.hasOwn(ANSWERS, frame.type)) paired(frame);
    switch (frame.type) {
      case "joinSuccess":
        joined = { channelId: asText(frame.channelId), senderId: asText(frame.senderId), watching: frame.presence === true };
        log("received", frame.type, "good",
            [`joined ${joined.channelId} as `, [joined.senderId, "sender"]], text);
        members.clear();
        if (joined.watching) { render(); send("members", { type: "members" }); return; }
        break;
      case "joinFailure":
        log("received", frame.type, "bad", [asText(frame.data)], text);
        break;
      case "publishSuccess":
        log("received", frame.type, "good",
            [frame.queued === undefined ? "published" : `published; ${asText(frame.queued)} more queued`], text);
        break;
      case "publishFailure": {
        const counts = ["delivered", "failed", "queued"].filter((k) => frame[k] !== undefined)
          .map((k) => `${k} ${asText(frame[k])}`);
        log("received", frame.type, "bad",
            [asText(frame.data) + (counts.length ? ` (${counts.join(", ")})` : "")], text);
        break;
      }
      case "message":
        log("received", frame.type, "message",
            [[asText(frame.senderId), "sender"], ` in ${asText(frame.channelId)}: `, [asText(frame.data), "data"]],
            text, frame.messageId === undefined ? undefined : asText(frame.messageId));
        break;
      case "pong": {
        const sent = pingsSent.get(frame.data);
        pingsSent.delete(frame.data);
        const data = frame.data === undefined ? "pong" : `pong ${asText(frame.data)}`;
        log("received", frame.type, "good",
            [sent === undefined ? data : `${data} after ${Math.round(performance.now() - sent)} ms`], text);
        break;
      }
      case "error":
        log("received", frame.type, "bad", [asText(frame.data)], text);
        break;
      case "memberJoined": case "memberLeft": case "members":
        presenceFrame(frame, text);
        break;
      default:  // a type this page does not know (§10)
        log("received", asText(frame.type), "plain", ["a frame of a type this page does not know"], text);
    }
    render();
  }

  function connect(event) {
    event.preventDefault();
    if (ws) return;
    const url = ui.url.value.trim();
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      log("event", "error", "bad", [`cannot connect to ${url}: ${error.message}`]);
      return;
    }
    socket.binaryType = "arraybuffer";
    ws = socket;
    joined = null;
    pending = null;
    pingsSent.clear();
    log("event", "connecting", "plain", [`connecting to ${url}`]);
    socket.addEventListener("open", () => {
      if (ws !== socket) return;
      log("event", "open", "good", ["connected"]);
      render();
      ui.channel.focus();
    });
    socket.addEventListener("message", (e) => {
      if (ws === socket) receive(e.data);
    });
    socket.addEventListener("error", () => {
      if (ws === socket) log("event", "error", "bad", ["connection error (the browser gives no details; see the close code)"]);
    });
    socket.addEventListener("close", (e) => {
      if (ws !== socket) return;
      ws = null;
      joined = null;
      pending = null;
      const name = CLOSE_CODES[e.code] ? ` (${CLOSE_CODES[e.code]})` : "";
      const reason = e.reason ? `, reason: ${e.reason}` : ", no reason given";
      log("event", "close", e.code === 1000 ? "plain" : "bad", [`closed with code ${e.code}${name}${reason}`]);
      render();
    });
    render();
  }

  ui.url.value = defaultUrl();
  render();

  $("connection-form").addEventListener("submit", connect);
  ui.disconnect.addEventListener("click", () => {
    if (ws) ws.close(1000, "Disconnect button");
    render();
  });
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const channelId = ui.channel.value;
    send("join", { type: "join", channelId, presence: true });  // ignored by a server without presence
  });
  $("publish-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (joined === null) return;
    const data = ui.text.value;
    if (send("publish", { type: "publish", data })) {
      ui.text.value = "";
      ui.text.focus();
    }
  });
  ui.ping.addEventListener("click", () => {
    const number = pings + 1;
    if (send("ping", { type: "ping", data: number })) {
      pings = number;
      pingsSent.set(number, performance.now());
    }
  });
  ui.clear.addEventListener("click", () => ui.log.replaceChildren());
  let lastScrollTop = 0;
  ui.log.addEventListener("scroll", () => {
    // only the reader scrolls up (a layout change never moves scrollTop up
    // unless the log is then at its end)
    const top = ui.log.scrollTop;
    if (top < lastScrollTop) following = false;
    if (top + ui.log.clientHeight >= ui.log.scrollHeight - 8) following = true;
    lastScrollTop = top;
  });
})();
