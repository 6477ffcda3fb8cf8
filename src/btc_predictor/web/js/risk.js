// The risk card: the expected daily range for the next days against naive, next-day VaR,
// p_up with an honest note, and the range model's holdout MASE with its verdict.

import { api, enc } from "./api.js";
import { drawChart, clearChart, pointCounts } from "./charts.js";
import { $, code, el, setText, showEmpty, showError } from "./dom.js";
import * as fmt from "./format.js";

const card = () => $("#risk-card");
const chartBox = () => $("#risk-chart");
// p_up inside this band is no usable directional call: daily crypto direction is a coin flip
// for every model we measured (NOTES-RISK.md), and p_up leaves 0.5 only with holdout skill.
export const NO_EDGE = [0.45, 0.55];
const TABLE_DAYS = 7;

export function noRiskModelMessage(asset) {
  return ["No risk model yet: run ", code(`btc-predictor train --asset ${asset} --model har`),
    ", or pick a risk model in the “Train a model” panel."];
}

/** The risk forecast for the chart's horizon (null without an active risk model or data). */
export async function loadRisk(row, activeRisk, horizon) {
  if (!row?.rows || activeRisk === null) return null;
  return api(`/api/v1/risk?asset=${enc(row.asset)}&horizon=${horizon}`);
}

const pct = (value) => (value == null ? "—" : `${fmt.number(value, 2)}%`);

/** Everything on the card; `forecast` is the price forecast (p_up), `activeRisk` the version. */
export function renderRisk(asset, risk, forecast, activeRisk) {
  const box = card();
  showError(box, null);
  const missing = activeRisk === null ? noRiskModelMessage(asset) : null;
  showEmpty(box, missing);
  $("#risk-card .metrics").hidden = Boolean(missing);
  $("#risk-table").hidden = !risk;
  drawRange(asset, risk);
  renderTable(risk);
  renderVar(asset, risk);
  renderDirection(forecast);
  renderRiskMase(activeRisk);
}

function drawRange(asset, risk) {
  const box = chartBox();
  box.hidden = !risk;
  if (!risk) {
    clearChart(box);
    box.dataset.points = 0;
    return;
  }
  const points = risk.points;
  const data = [
    points.map((p) => fmt.epochDay(p.target_date)),
    points.map((p) => p.range_pct),
    points.map((p) => p.range_upper_pct),
    points.map((p) => p.range_lower_pct),
    points.map((p) => p.naive_range_pct),
  ];
  drawChart(box, {
    data,
    height: 220,
    format: (v) => pct(v),
    band: [2, 3],
    series: [
      { label: `expected range (${risk.model} v${risk.model_version})`, role: "forecast", value: pct },
      { label: `upper ${risk.level}%`, role: "bound", value: pct },
      { label: `lower ${risk.level}%`, role: "bound", value: pct },
      { label: "naive range (the last day's)", role: "naive", value: pct },
    ],
  });
  box.dataset.points = pointCounts(data)[0];
  box.dataset.ready = "true";
}

function renderTable(risk) {
  const rows = (risk?.points ?? []).slice(0, TABLE_DAYS).map((p) =>
    el("tr", { "data-horizon": p.horizon },
      el("th", { scope: "row" }, fmt.day(p.target_date)),
      el("td", { class: "num" }, pct(p.range_pct)),
      el("td", { class: "num" }, `${pct(p.range_lower_pct)} – ${pct(p.range_upper_pct)}`),
      el("td", { class: "num" }, pct(p.naive_range_pct))));
  $("#risk-table tbody").replaceChildren(...rows);
}

function renderVar(asset, risk) {
  const quote = fmt.quoteOf(asset);
  const point = risk?.points[0];
  setText("#risk-target", point ? fmt.day(point.target_date) : "the next day");
  for (const level of [95, 99]) {
    const value = point ? point[`var_${level}`] : null;
    const node = $(`#var-${level}`);
    node.dataset.value = value ?? "";
    node.textContent = value == null
      ? `${level}%: not available (the price model has too few residuals)`
      : `${level}%: ${pct(value)} of the last close (${fmt.money(value / 100 * risk.last_close, quote)})`;
  }
}

/** p_up of the next day; inside NO_EDGE the note says there is no directional edge. */
export function directionNote(pUp) {
  if (pUp == null) return "not available";
  if (pUp >= NO_EDGE[0] && pUp <= NO_EDGE[1]) {
    return "no directional edge: the model cannot call up or down better than a coin flip";
  }
  return `leans ${pUp > 0.5 ? "up" : "down"}: only as far as the model's holdout beat naive`;
}

function renderDirection(forecast) {
  const pUp = forecast?.points[0]?.p_up ?? null;
  const node = $("#p-up");
  node.textContent = fmt.percent(pUp);
  node.dataset.value = pUp ?? "";
  setText("#p-up-note", directionNote(pUp));
}

function renderRiskMase(activeRisk) {
  const mase = activeRisk?.holdout_mase ?? null;
  const verdict = fmt.verdict(mase);
  setText("#risk-mase", fmt.number(mase));
  const badge = $("#risk-verdict");
  badge.textContent = verdict.text.replace("forecast", "range");
  badge.className = `badge ${verdict.key}`;
  const metrics = activeRisk?.metrics ?? {};
  const naive = activeRisk?.baseline?.naive ?? {};
  setText("#risk-mase-detail", activeRisk
    ? `${activeRisk.model} v${activeRisk.id}: range MAE ${fmt.number(metrics.range_mae, 2)} pp ` +
      `vs naive range ${fmt.number(naive.mae, 2)} pp on the holdout days`
    : "—");
}
