// The live prices page. Prices come pushed over the WebSocket; while the stream is down they are
// polled once a slot over HTTP, and the stream is tried again with jittered backoff. A pair is
// stale when the server says so or when its age (on the server's clock, corrected with the Date
// header) passes STALE_AFTER_MS; a pair with no price yet is never shown stale.
"use strict";

const API = "/api/market-data";
const SLOT_MS = 4000; // the fetcher's slot: polling faster buys nothing
const POLL_AFTER_SLOT_MS = 600; // poll just after a slot's tick has written
const STALE_AFTER_MS = 12000; // the server flags at 5 s; one 4 s slot and margin later, stale whatever it said
const SILENT_STREAM_MS = 45000; // heartbeats come at least every 30 s: silence this long is a dead socket
const RECONNECT_BASE_MS = 500;
const RECONNECT_CAP_MS = 30000;
const STEADY_CONNECTION_MS = 10000; // a connection that lasted this long resets the backoff
const SPARKLINE_EVERY_MS = 15 * 60 * 1000; // sparkline points are 15-minute closes
const SPARKLINE_MISSING_RETRY_MS = 30000; // a new pair's day of candles arrives soon after it is listed
const DEFAULT_PAIRS = 8; // shown when nothing was picked: the first listed ones
const MAX_PAIRS = 100; // a subscription's limit
const PAIR = /^[A-Z0-9]{1,20}\/[A-Z0-9]{1,20}$/; // the service's BASE/QUOTE (it would refuse the whole request)
const STORED_PAIRS = "market-data-pairs";

const state = {
  pairs: [], // the pairs shown, in order
  listed: [], // every listed pair, for the picker
  entries: new Map(), // pair -> the latest entry
  sparklines: new Map(), // pair -> closes
  answered: false, // a read or snapshot has answered (until then nothing is stale or unavailable)
  retryAt: 0,
  connection: "down",
  service: { status: "ok", reason: "" },
  skew: { low: -Infinity, high: Infinity }, // server clock minus ours, in ms
  ws: null,
  subscribed: false, // a snapshot came on this socket: the stream brings the prices
  sent: new Set(), // the pairs this socket is subscribed to, as sent
  refused: "", // the service refused what was asked (a 400, or a stream error), in its words
  attempts: 0,
  lastMessageAt: 0,
  httpOk: false,
  pollTimer: null,
  sparklinesReadAt: 0,
};

// --- the server's clock -----------------------------------------------------------------------

// Date has whole seconds: the server's time, at some instant between sending and receiving, was
// within [Date, Date + 1 s). Each answer bounds the skew; the bounds tighten as answers come.
function learnSkew(response, sentAt, receivedAt) {
  const date = Date.parse(response.headers.get("Date") || "");
  if (Number.isNaN(date)) return;
  const low = date - receivedAt;
  const high = date + 1000 - sentAt;
  const next = { low: Math.max(state.skew.low, low), high: Math.min(state.skew.high, high) };
  state.skew = next.low <= next.high ? next : { low, high }; // a clock that jumped: start over
}

function skewMs() {
  const { low, high } = state.skew;
  return Number.isFinite(low) && Number.isFinite(high) ? (low + high) / 2 : 0;
}

const serverNow = () => Date.now() + skewMs();

// --- what each pair shows -----------------------------------------------------------------------

function pairStatus(pair) {
  const entry = state.entries.get(pair);
  if (!entry) return state.answered ? "unavailable" : "loading";
  return entry.stale || serverNow() - entry.timestamp > STALE_AFTER_MS ? "stale" : "live";
}

function formatPrice(price) {
  if (price >= 1000) return price.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  if (price >= 1) return price.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 });
  return price.toLocaleString("en-US", { maximumSignificantDigits: 6 });
}

function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

function el(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function card(pair) {
  const article = el("article", { class: "card", "data-pair": pair, "data-status": "loading" });
  const header = el("header");
  header.append(el("h2", {}, pair), el("span", { class: "badge", "data-field": "status" }, "loading"));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("data-field", "sparkline");
  svg.setAttribute("viewBox", "0 0 95 30");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-label", `${pair}, last 24 h`);
  svg.append(document.createElementNS(SVG, "path"));
  const meta = el("div", { class: "meta" });
  meta.append(el("span", { "data-field": "exchange" }), el("span", { "data-field": "age" }));
  article.append(
    header,
    el("div", { class: "price", "data-field": "price" }),
    el("div", { class: "change", "data-field": "change24h" }),
    svg,
    meta,
  );
  return article;
}

function drawSparkline(svg, closes, price) {
  const points = closes.slice();
  if (points.length && price !== undefined) points[points.length - 1] = price; // the interval now open
  const known = points.filter((v) => v !== null && v !== undefined);
  const path = svg.querySelector("path");
  if (known.length < 2) {
    path.setAttribute("d", "");
    return;
  }
  const min = Math.min(...known);
  const span = Math.max(...known) - min || 1;
  let d = "";
  let pen = "M";
  points.forEach((v, i) => {
    if (v === null || v === undefined) {
      pen = "M"; // a gap: never drawn across
      return;
    }
    d += `${pen}${i},${(30 - ((v - min) / span) * 28 - 1).toFixed(2)} `;
    pen = "L";
  });
  path.setAttribute("d", d.trim());
  const first = known[0];
  const last = known[known.length - 1];
  svg.setAttribute("class", `sparkline ${last > first ? "up" : last < first ? "down" : "flat"}`);
}

function render() {
  const cards = document.getElementById("cards");
  const wanted = new Set(state.pairs);
  for (const node of [...cards.children]) if (!wanted.has(node.dataset.pair)) node.remove();
  state.pairs.forEach((pair, index) => {
    let node = cards.querySelector(`[data-pair="${CSS.escape(pair)}"]`);
    if (!node) node = card(pair);
    if (cards.children[index] !== node) cards.insertBefore(node, cards.children[index] || null);
    renderCard(node, pair);
  });
  renderConnection();
  renderNotice();
}

function renderCard(node, pair) {
  const entry = state.entries.get(pair);
  const status = pairStatus(pair);
  node.dataset.status = status;
  const field = (name) => node.querySelector(`[data-field="${name}"]`);
  field("status").textContent = status;
  if (!entry) {
    field("price").textContent = status === "loading" ? "…" : "—";
    field("change24h").textContent = status === "loading" ? "" : "temporarily unavailable";
    field("change24h").className = "change unavailable-text";
    field("exchange").textContent = "";
    field("age").textContent = "";
    drawSparkline(field("sparkline"), [], undefined);
    return;
  }
  field("price").textContent = formatPrice(entry.price);
  const change = entry.change24h;
  field("change24h").textContent = `${change > 0 ? "+" : ""}${change.toFixed(2)} % 24 h`;
  field("change24h").className = `change ${change > 0 ? "up" : change < 0 ? "down" : "flat"}`;
  field("exchange").textContent = entry.source === "cache" ? entry.exchange : `${entry.exchange}, kept copy`;
  field("age").textContent = formatAge(serverNow() - entry.timestamp);
  drawSparkline(field("sparkline"), state.sparklines.get(pair) || [], entry.price);
}

function renderConnection() {
  const node = document.querySelector("[data-connection]");
  node.dataset.connection = state.connection;
  const labels = { stream: "live stream", polling: "polling every 4 s", down: "offline, retrying" };
  node.querySelector(".label").textContent = labels[state.connection];
}

function renderNotice() {
  const notice = document.getElementById("notice");
  let text = "";
  let down = false;
  if (state.refused) {
    text = `The service refused the request: ${state.refused}`;
  } else if (state.connection === "down" && state.answered) {
    text = "The service cannot be reached; retrying. The prices shown are the last received.";
    down = true;
  } else if (state.answered && state.pairs.length && state.pairs.every((pair) => !state.entries.has(pair))) {
    // Nothing to show yet (a cold cache): design 002's "temporarily unavailable", and why if known.
    const seconds = Math.ceil((state.retryAt - Date.now()) / 1000);
    const when = state.subscribed || seconds < 1 ? "" : `; retrying in ${seconds} s`;
    const why = state.service.status !== "ok" && state.service.reason ? ` (${state.service.reason})` : "";
    text = `Prices are temporarily unavailable${when}.${why}`;
  } else if (state.service.status !== "ok" && state.service.reason) {
    text = `Service ${state.service.status}: ${state.service.reason}`;
    down = state.service.status === "down";
  }
  notice.hidden = !text;
  notice.textContent = text;
  notice.className = down ? "notice down" : "notice";
}

// --- which pairs ----------------------------------------------------------------------------------

// Only well-formed pairs are kept: one malformed pair would have the service refuse the whole read.
function cleanPairs(text) {
  let decoded = text;
  try {
    decoded = decodeURIComponent(text);
  } catch {
    // a stray "%": the text as it is
  }
  const pairs = decoded.split(",").map((p) => p.trim().toUpperCase()).filter((p) => PAIR.test(p));
  return [...new Set(pairs)].slice(0, MAX_PAIRS);
}

function pairsFromLocation() {
  const match = /(?:^|[#&])pairs=([^&]*)/.exec(location.hash);
  return match ? cleanPairs(match[1]) : null;
}

// Site data may be blocked: the page works without remembering.
function remembered() {
  try {
    return cleanPairs(localStorage.getItem(STORED_PAIRS) || "");
  } catch {
    return [];
  }
}

function remember(pairs) {
  try {
    localStorage.setItem(STORED_PAIRS, pairs.join(","));
  } catch {
    // not remembered: the address still holds the choice
  }
}

function choosePairs(pairs) {
  const before = new Set(state.pairs);
  state.pairs = pairs.slice(0, MAX_PAIRS);
  state.refused = "";
  history.replaceState(null, "", `#pairs=${state.pairs.join(",")}`);
  remember(state.pairs);
  const added = state.pairs.filter((p) => !before.has(p));
  subscribe();
  render();
  renderPicker();
  if (added.length) readPrices(true); // their sparklines, and a price at once
}

function renderPicker() {
  const list = document.getElementById("picker-list");
  const legend = list.querySelector("legend");
  list.replaceChildren(legend);
  const all = [...new Set([...state.listed, ...state.pairs])].sort();
  for (const pair of all) {
    const label = el("label");
    const box = el("input", { type: "checkbox", value: pair, "data-pick": pair });
    box.checked = state.pairs.includes(pair);
    label.append(box, document.createTextNode(pair));
    list.append(label);
  }
  document.getElementById("picker-empty").hidden = all.length > 0;
  document.getElementById("picker-count").textContent = `(${state.pairs.length} of ${all.length})`;
}

function onPick(event) {
  const box = event.target;
  if (!box.matches("input[data-pick]")) return;
  const picked = [...document.querySelectorAll("input[data-pick]:checked")].map((b) => b.value);
  const order = state.pairs.filter((p) => picked.includes(p)).concat(picked.filter((p) => !state.pairs.includes(p)));
  choosePairs(order);
}

// --- HTTP: the first read, and polling while the stream is down -------------------------------

async function getJson(url) {
  const sentAt = Date.now();
  // "no-cache": the browser revalidates with the ETag it kept, so an unchanged slot is a 304.
  const response = await fetch(url, { cache: "no-cache", headers: { Accept: "application/json" } });
  learnSkew(response, sentAt, Date.now());
  return response;
}

async function readPrices(withSparklines) {
  const query = new URLSearchParams();
  if (state.pairs.length) query.set("pairs", state.pairs.join(","));
  if (withSparklines) {
    query.set("include", "sparkline");
    state.sparklinesReadAt = Date.now();
  }
  let response;
  try {
    response = await getJson(`${API}/prices?${query}`);
  } catch {
    state.httpOk = false;
    if (!state.subscribed) state.connection = "down";
    render();
    return false;
  }
  state.httpOk = response.status < 500 || response.status === 503;
  if (!state.subscribed) state.connection = state.httpOk ? "polling" : "down";
  if (response.status === 200 || response.status === 206) {
    const prices = await response.json();
    applyPrices(prices, withSparklines);
    if (!state.pairs.length) {
      // Nothing picked and nothing was listed at the start (a cold cache): the first listed ones.
      state.listed = Object.keys(prices).sort();
      if (state.listed.length) choosePairs(state.listed.slice(0, DEFAULT_PAIRS));
    }
  } else if (response.status === 503) {
    const retry = Number(response.headers.get("Retry-After")) || SLOT_MS / 1000;
    state.retryAt = Date.now() + retry * 1000;
  } else if (response.status === 400 || response.status === 404) {
    // A pair the service refuses or does not list: say so in its words (the message names it).
    const body = await response.json().catch(() => ({}));
    state.refused = body.message || `HTTP ${response.status}`;
  }
  state.answered = state.answered || response.status < 500 || response.status === 503;
  render();
  return response.ok;
}

function applyPrices(prices, withSparklines) {
  for (const [pair, entry] of Object.entries(prices)) {
    const known = state.entries.get(pair);
    if (!known || entry.timestamp >= known.timestamp || entry.source !== known.source) state.entries.set(pair, entry);
    if (withSparklines && Array.isArray(entry.sparkline)) state.sparklines.set(pair, entry.sparkline);
  }
}

function schedulePoll() {
  clearTimeout(state.pollTimer);
  if (state.subscribed) return; // the stream brings the prices
  const now = serverNow();
  const nextSlot = (Math.floor(now / SLOT_MS) + 1) * SLOT_MS + POLL_AFTER_SLOT_MS;
  const wait = Math.max(nextSlot - now, state.retryAt - Date.now(), 250);
  state.pollTimer = setTimeout(async () => {
    await readPrices(false);
    schedulePoll();
  }, wait);
}

// --- the stream -----------------------------------------------------------------------------------

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

// --- start --------------------------------------------------------------------------------------

async function listPairs() {
  try {
    const response = await getJson(`${API}/prices`);
    if (response.status === 200 || response.status === 206) {
      const prices = await response.json();
      state.listed = Object.keys(prices).sort();
      applyPrices(prices, false);
    }
  } catch {
    // the first read below reports the connection
  }
}

async function start() {
  document.getElementById("picker-form").addEventListener("change", onPick);
  window.addEventListener("hashchange", () => {
    const pairs = pairsFromLocation();
    if (pairs && pairs.join() !== state.pairs.join()) choosePairs(pairs);
  });
  state.pairs = pairsFromLocation() || remembered();
  if (state.pairs.length) history.replaceState(null, "", `#pairs=${state.pairs.join(",")}`); // as cleaned
  render();
  await listPairs();
  if (!state.pairs.length) state.pairs = state.listed.slice(0, DEFAULT_PAIRS);
  renderPicker();
  await readPrices(true);
  connect();
  schedulePoll();
  setInterval(watchdog, 1000);
  setInterval(() => {
    listPairs().then(renderPicker);
    readPrices(true);
  }, SPARKLINE_EVERY_MS);
}

start();
