// The live prices page: its state, the pairs shown, the HTTP reads (the first one, and polling
// once a slot while the stream is down) and the start. The view is view.js, the stream stream.js;
// index.html loads the three in order.
"use strict";

const API = "/api/market-data";
const SLOT_MS = 4000; // the fetcher's slot: polling faster buys nothing
const POLL_AFTER_SLOT_MS = 600; // poll just after a slot's tick has written
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
