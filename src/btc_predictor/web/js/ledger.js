// The forecast ledger: recent served forecasts and how they turned out.

import { api, enc } from "./api.js";
import { $, code, el, showEmpty, showError } from "./dom.js";
import * as fmt from "./format.js";

const card = () => $("#ledger-card");

export async function loadLedger(asset, limit = 200) {
  return api(`/api/v1/predictions?asset=${enc(asset)}&limit=${limit}`);
}

function outcome(entry) {
  if (entry.actual == null) return el("span", { class: "muted" }, "pending");
  return entry.inside
    ? el("span", { class: "badge beats" }, "inside")
    : el("span", { class: "badge worse" }, "outside");
}

function entryRow(asset, entry) {
  const money = (v) => fmt.money(v, fmt.quoteOf(asset));
  return el("tr", {},
    el("td", {}, fmt.day(entry.target_date)),
    el("td", { class: "num" }, entry.horizon),
    el("td", {}, `${entry.model ?? "?"} v${entry.model_version}`),
    el("td", { class: "num" }, money(entry.forecast)),
    el("td", {}, `${money(entry.lower)} – ${money(entry.upper)}`),
    el("td", { class: "num" }, money(entry.naive)),
    el("td", { class: "num" }, money(entry.actual)),
    el("td", { class: "num" }, money(entry.abs_error)),
    el("td", { class: "num" }, money(entry.naive_abs_error)),
    el("td", {}, outcome(entry)));
}

/** The newest `shown` entries (the card's table; the metrics card uses all of them). */
export function renderLedger(asset, entries, shown = 50) {
  showError(card(), null);
  showEmpty(card(), entries.length ? null : ["No forecasts served yet: every forecast the API serves ",
    "(", code("GET /predict"), ", ", code("/api/v1/forecast"), ", this page) is recorded here."]);
  $("#ledger-table").hidden = !entries.length;
  $("#ledger-table tbody").replaceChildren(...entries.slice(0, shown).map((e) => entryRow(asset, e)));
}
