// The live page's stream: subscribe over the WebSocket, follow its messages, and when it drops
// or falls silent poll at once (app.js) and reconnect with full-jitter backoff.
"use strict";

const SILENT_STREAM_MS = 45000; // heartbeats come at least every 30 s: silence this long is a dead socket
const RECONNECT_BASE_MS = 500;
const RECONNECT_CAP_MS = 30000;
const STEADY_CONNECTION_MS = 10000; // a connection that lasted this long resets the backoff


function streamUrl() {
  const configured = document.querySelector('meta[name="market-data-stream"]').content.trim();
  if (configured && !configured.startsWith("{{")) return configured;
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

function connect() {
  let ws;
  try {
    ws = new WebSocket(streamUrl());
  } catch {
    reconnectLater();
    return;
  }
  let openedAt = Infinity;
  state.ws = ws;
  state.sent = new Set();
  ws.onopen = () => {
    openedAt = Date.now();
    state.lastMessageAt = openedAt;
    subscribe();
  };
  ws.onmessage = (event) => {
    state.lastMessageAt = Date.now();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    onStreamMessage(message);
  };
  ws.onclose = () => streamLost(ws, openedAt);
}

// The socket is gone (closed, or silent too long): poll at once and try the stream again later.
function streamLost(ws, openedAt) {
  if (state.ws !== ws) return; // already handled
  state.ws = null;
  state.subscribed = false;
  state.sent = new Set();
  if (Date.now() - openedAt > STEADY_CONNECTION_MS) state.attempts = 0;
  state.connection = state.httpOk ? "polling" : "down";
  render();
  readPrices(false).then(schedulePoll); // prices keep coming while the stream is away
  reconnectLater();
}

// Bring the socket's subscription to the pairs shown: what was sent and is no longer shown is
// unsubscribed (it would count against the connection's 100), what is new is subscribed (answered
// with a snapshot of those pairs).
function subscribe() {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const removed = [...state.sent].filter((p) => !state.pairs.includes(p));
  const added = state.pairs.filter((p) => !state.sent.has(p));
  if (removed.length) ws.send(JSON.stringify({ action: "unsubscribe", pairs: removed }));
  if (added.length) ws.send(JSON.stringify({ action: "subscribe", pairs: added }));
  state.sent = new Set(state.pairs);
}

function reconnectLater() {
  // Full jitter: clients dropped together do not come back together.
  const ceiling = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** state.attempts);
  state.attempts += 1;
  setTimeout(connect, Math.random() * ceiling);
}

function onStreamMessage(message) {
  switch (message.type) {
    case "snapshot":
      applyPrices(message.prices || {}, false);
      state.service = { status: message.status || "ok", reason: message.reason || "" };
      state.subscribed = true;
      state.answered = true;
      state.connection = "stream";
      clearTimeout(state.pollTimer);
      break;
    case "update":
      applyPrices(message.prices || {}, false);
      break;
    case "status":
      state.service = { status: message.status, reason: message.reason || "" };
      break;
    case "heartbeat":
      if (typeof message.at === "number") {
        // The server's clock was at least `at` when it sent this: a lower bound on the skew.
        const low = message.at - Date.now();
        if (low <= state.skew.high) state.skew = { low: Math.max(state.skew.low, low), high: state.skew.high };
      }
      break;
    case "error":
      state.refused = message.message || message.error || "";
      break;
    default:
      break;
  }
  render();
}

function watchdog() {
  const ws = state.ws;
  if (ws && ws.readyState === WebSocket.OPEN && Date.now() - state.lastMessageAt > SILENT_STREAM_MS) {
    // Silent too long: a dead socket. Its close event may take a minute to come; act now.
    streamLost(ws, 0);
    ws.close();
  }
  render(); // ages move, and a price can turn stale with no message at all
  const lacking = state.pairs.some((pair) => state.entries.has(pair) && !(state.sparklines.get(pair) || []).some((v) => v !== null));
  if (lacking && Date.now() - state.sparklinesReadAt > SPARKLINE_MISSING_RETRY_MS) readPrices(true);
}
