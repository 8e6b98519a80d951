// The live page's view: what each pair shows, drawn from `state` (app.js). A pair is stale when
// the server says so or when its age, on the server's clock, passes STALE_AFTER_MS; a pair with
// no price yet is never shown stale.
"use strict";

const STALE_AFTER_MS = 12000; // the server flags at 5 s; one 4 s slot and margin later, stale whatever it said


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
