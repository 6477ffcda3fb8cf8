// Backtests: pick one, see actual vs forecast (with its band and naive) per horizon, the error
// by horizon against naive; start a new one and follow its job.

import { api, enc, pollJob } from "./api.js";
import { clearChart, drawChart, pointCounts } from "./charts.js";
import { $, code, el, setText, showEmpty, showError } from "./dom.js";
import * as fmt from "./format.js";

const card = () => $("#backtest-card");
const chartBox = () => $("#backtest-chart");
let current = null; // the shown backtest result (with its series)

// A risk model's backtest scores the daily range (% of the previous close) against naive-range.
const isRisk = (result) => result.family === "risk";
const rangeText = (value) => (value == null ? "—" : fmt.percent(value / 100, 2));

function optionLabel(job) {
  const params = job.params || {};
  const result = job.result || {};
  const span = result.start ? `${result.start} → ${result.end}` : `${params.days ?? "?"} days`;
  const status = job.status === "succeeded" ? "" : ` (${job.status})`;
  return `${params.model || "default model"} · ${span} · h1–${params.horizon ?? "?"}${status}`;
}

/** The backtest list of an asset into the select; shows the newest finished one. */
export async function loadBacktests(asset, selectId = null) {
  showError(card(), null);
  const jobs = await api(`/api/v1/backtests?asset=${enc(asset)}`);
  const select = $("#backtest-select");
  select.replaceChildren(...jobs.map((j) => el("option", { value: j.id }, optionLabel(j))));
  for (const part of ["#backtest-card .controls", "#backtest-chart", "#backtest-table"]) {
    $(part).hidden = !jobs.length;
  }
  if (!jobs.length) {
    current = null;
    clearChart(chartBox());
    chartBox().dataset.points = 0;
    showEmpty(card(), ["No backtests yet: start one below, or run ",
      code(`btc-predictor backtest --asset ${asset}`), "."]);
    return;
  }
  showEmpty(card(), null);
  const chosen = jobs.find((j) => j.id === selectId) || jobs.find((j) => j.status === "succeeded") || jobs[0];
  select.value = chosen.id;
  await showBacktest(asset, chosen.id);
}

async function showBacktest(asset, id) {
  const answer = await api(`/api/v1/backtests/${enc(id)}`);
  if (!answer.series) { // still a job: queued, running, failed or cancelled
    current = null;
    clearChart(chartBox());
    $("#backtest-table tbody").replaceChildren();
    setText("#backtest-status", `This backtest is ${answer.status}` + (answer.error ? `: ${answer.error}` : "."));
    return;
  }
  current = { ...answer, asset };
  setText("#backtest-status", `${answer.model} on ${asset}, ${fmt.day(answer.start)} – ${fmt.day(answer.end)}: ` +
    `${fmt.integer(answer.folds)} folds, refit every ${answer.refit_every} days, ${answer.level}% intervals` +
    (isRisk(answer) ? "; daily range in % of the previous close, against naive-range." : "."));
  const horizons = answer.horizons.map((h) => h.h);
  $("#backtest-horizon").replaceChildren(...horizons.map((h) => el("option", { value: h }, `${h} day${h > 1 ? "s" : ""}`)));
  renderTable(asset, answer);
  drawBacktest(1);
}

function renderTable(asset, result) {
  const quote = fmt.quoteOf(asset);
  const risk = isRisk(result);
  const error = risk ? rangeText : (v) => fmt.money(v, quote);
  const rows = result.horizons.map((h) => {
    const verdict = fmt.verdict(h.mase);
    return el("tr", {},
      el("th", { scope: "row", class: "num" }, h.h),
      el("td", { class: "num" }, fmt.integer(h.n)),
      el("td", { class: "num" }, error(risk ? h.range_mae : h.mae)),
      el("td", { class: "num" }, error(risk ? h.naive_range_mae : h.naive_mae)),
      el("td", { class: "num" }, fmt.number(h.mase)),
      el("td", {}, el("span", { class: `badge ${verdict.key}` }, verdict.text)),
      el("td", { class: "num" }, h.coverage == null ? "not calibrated yet" : fmt.percent(h.coverage)),
      el("td", { class: "num" }, fmt.number(h.dm_pvalue, 2)));
  });
  $("#backtest-table tbody").replaceChildren(...rows);
}

function drawBacktest(horizon) {
  if (!current) return;
  const risk = isRisk(current);
  const money = risk ? rangeText : (v) => fmt.money(v, fmt.quoteOf(current.asset));
  const rows = current.series.filter((r) => r.h === horizon);
  const data = [
    rows.map((r) => fmt.epochDay(r.target_date)),
    rows.map((r) => r.actual),
    rows.map((r) => r.forecast),
    rows.map((r) => r.upper),
    rows.map((r) => r.lower),
    rows.map((r) => r.naive),
  ];
  drawChart(chartBox(), {
    data, format: fmt.compact, band: [3, 4], height: 280,
    series: [
      { label: risk ? "realised range" : "actual", role: "actual", value: money },
      { label: `forecast (${horizon} d ahead)`, role: "forecast", value: money },
      { label: `upper ${current.level}%`, role: "bound", value: money },
      { label: `lower ${current.level}%`, role: "bound", value: money },
      { label: risk ? "naive-range (origin day's range)" : "naive (close at origin)", role: "naive", value: money },
    ],
  });
  chartBox().dataset.points = pointCounts(data)[1];
}

function backtestBody(asset) {
  const body = {
    asset,
    days: Number($("#backtest-days").value),
    horizon: Number($("#backtest-max-horizon").value),
    refit_every: Number($("#backtest-refit").value),
  };
  if ($("#backtest-model").value) body.model = $("#backtest-model").value;
  return body;
}

async function startBacktest(asset) {
  const button = $("#backtest-start");
  const bar = $("#backtest-progress");
  showError(card(), null);
  button.disabled = true;
  try {
    const job = await api("/api/v1/backtests", { method: "POST", body: backtestBody(asset), auth: true });
    bar.hidden = false;
    const done = await pollJob(job.id, (j) => {
      bar.value = j.progress || 0;
      setText("#backtest-status", `Backtest ${j.status}` + (j.message ? ` (${j.message})` : ""));
    }, 1000);
    bar.hidden = true;
    if (done.status !== "succeeded") throw new Error(`Backtest ${done.status}: ${done.error || "no reason given"}`);
    await loadBacktests(asset, done.id);
  } catch (err) {
    showError(card(), err);
  } finally {
    button.disabled = false;
  }
}

/** Wire the selects and the start form (the model list is the training form's). */
export function setupBacktests(currentAsset) {
  $("#backtest-model").replaceChildren(...[...$("#train-model").options].map((o) => o.cloneNode(true)));
  $("#backtest-select").addEventListener("change", (e) =>
    showBacktest(currentAsset(), e.target.value).catch((err) => showError(card(), err)));
  $("#backtest-horizon").addEventListener("change", (e) => drawBacktest(Number(e.target.value)));
  $("#backtest-form").addEventListener("submit", (event) => {
    event.preventDefault();
    startBacktest(currentAsset());
  });
}
