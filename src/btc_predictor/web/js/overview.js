// The header facts, the price chart with the forecast fan, and the next-day metrics card.

import { api, enc } from "./api.js";
import { drawChart, clearChart, pointCounts } from "./charts.js";
import { $, code, setText, showEmpty, showError } from "./dom.js";
import * as fmt from "./format.js";

const chartBox = () => $("#forecast-chart");
const forecastCard = () => chartBox().closest("section");
const metricsCard = () => $("#metrics-card");

export function noDataMessage(asset) {
  return ["No data yet: run ", code(`btc-predictor ingest --asset ${asset}`),
    " (or ", code("./run.sh local"), ") to store its daily candles."];
}

export function noModelMessage(asset) {
  return ["No model yet: run ", code(`btc-predictor train --asset ${asset}`),
    ", or start one in the “Train a model” panel."];
}

/** Header: last close and its date, data age (warning when stale). */
export function renderHeader(row, lastClose) {
  const quote = fmt.quoteOf(row?.asset);
  setText("#last-close", lastClose == null ? "—" : fmt.money(lastClose, quote));
  setText("#last-date", fmt.day(row?.last));
  setText("#data-age", row?.latest_age_seconds == null ? "no data" : fmt.duration(row.latest_age_seconds));
  const badge = $("#stale-badge");
  badge.hidden = !row?.stale;
  badge.textContent = "stale: older than BTCP_MAX_DATA_AGE, refresh the data";
}

export function renderActiveModel(active) {
  setText("#active-model", active ? `${active.model} v${active.id}` : active === null ? "none" : "—");
}

/** Candles and (with an active model) the forecast; draws the chart; returns both. */
export async function loadForecast(row, active, options) {
  const card = forecastCard();
  showError(card, null);
  showEmpty(card, null);
  chartBox().hidden = !row?.rows;
  if (!row || row.rows === 0) {
    clearChart(chartBox());
    setCounts({ history: 0, forecast: 0, naive: 0 });
    showEmpty(card, noDataMessage(row?.asset ?? "BTC-USD"));
    return { candles: [], forecast: null };
  }
  const asset = enc(row.asset);
  const candles = await api(`/api/v1/assets/${asset}/candles?limit=${options.historyDays}`);
  let forecast = null;
  if (active === null) {
    showEmpty(card, noModelMessage(row.asset));
  } else {
    try {
      forecast = await api(`/api/v1/forecast?asset=${asset}&horizon=${options.horizon}&level=${options.level}`);
    } catch (err) {
      showError(card, err); // e.g. horizon_exceeds_model: the history still shows
    }
  }
  drawForecast(row.asset, candles, forecast);
  return { candles, forecast };
}

function setCounts({ history, forecast, naive }) {
  const box = chartBox();
  box.dataset.historyPoints = history;
  box.dataset.forecastPoints = forecast;
  box.dataset.naivePoints = naive;
}

/** History (closes), forecast with its band, and naive, on one UTC-day axis. */
function forecastData(candles, forecast) {
  const points = forecast ? forecast.points : [];
  const days = [...candles.map((c) => c.date), ...points.map((p) => p.target_date)];
  const pad = (values, before) => [...Array(before).fill(null), ...values];
  const after = Array(points.length).fill(null);
  return [
    days.map(fmt.epochDay),
    [...candles.map((c) => c.close), ...after],
    pad(points.map((p) => p.value), candles.length),
    pad(points.map((p) => p.upper), candles.length),
    pad(points.map((p) => p.lower), candles.length),
    pad(points.map((p) => p.naive), candles.length),
  ];
}

function drawForecast(asset, candles, forecast) {
  const quote = fmt.quoteOf(asset);
  const money = (v) => fmt.money(v, quote);
  const level = forecast ? forecast.level : 90;
  const data = forecastData(candles, forecast);
  drawChart(chartBox(), {
    data,
    format: fmt.compact,
    band: [3, 4],
    series: [
      { label: "close", role: "actual", value: money },
      { label: forecast ? `forecast (${forecast.model} v${forecast.model_version})` : "forecast", role: "forecast", value: money },
      { label: `upper ${level}%`, role: "bound", value: money },
      { label: `lower ${level}%`, role: "bound", value: money },
      { label: "naive (last close held flat)", role: "naive", value: money },
    ],
  });
  const [history, predicted, , , naive] = pointCounts(data);
  setCounts({ history, forecast: predicted, naive });
  chartBox().dataset.ready = "true";
}

/** The next-day card: forecast and interval, holdout MASE with its verdict, live ledger numbers. */
export function renderMetrics(asset, forecast, active, ledger) {
  const card = metricsCard();
  showError(card, null);
  setText("#verdict-rule", fmt.verdictRule());
  showEmpty(card, active === null ? noModelMessage(asset) : null);
  $("#metrics-card .metrics").hidden = active === null; // nothing to measure without a model
  renderNextDay(asset, forecast);
  renderMase(asset, active);
  renderLive(asset, ledger);
}

function renderNextDay(asset, forecast) {
  const quote = fmt.quoteOf(asset);
  const point = forecast?.points[0];
  const value = $("#next-value");
  value.textContent = point ? fmt.money(point.value, quote) : "—";
  value.dataset.value = point ? point.value : "";
  setText("#next-target", point ? fmt.day(point.target_date) : "the next day");
  setText("#next-level", forecast ? forecast.level : 90);
  setText("#next-interval", point ? `${fmt.money(point.lower, quote)} – ${fmt.money(point.upper, quote)}` : "—");
  setText("#next-change", point
    ? `${fmt.signedPercent(point.value / forecast.last_close - 1)} vs the last close (naive: ${fmt.money(point.naive, quote)})`
    : "—");
}

function renderMase(asset, active) {
  const quote = fmt.quoteOf(asset);
  const mase = active ? active.holdout_mase ?? active.metrics?.mase : null;
  const verdict = fmt.verdict(mase);
  setText("#mase", fmt.number(mase));
  const badge = $("#verdict");
  badge.textContent = verdict.text;
  badge.className = `badge ${verdict.key}`;
  const metrics = active?.metrics ?? {};
  const naive = active?.baseline?.naive ?? {};
  setText("#mase-detail", active
    ? `MAE ${fmt.money(metrics.mae, quote)} vs naive ${fmt.money(naive.mae, quote)} on the holdout days` +
      (metrics.dm_pvalue == null ? "" : `; Diebold–Mariano p = ${fmt.number(metrics.dm_pvalue, 2)}`)
    : "—");
}

/** Scored next-day ledger entries: mean errors of model and naive, share inside the interval. */
export function liveStats(ledger) {
  const scored = (ledger || []).filter((e) => e.horizon === 1 && e.actual != null);
  if (!scored.length) return null;
  const mean = (key) => scored.reduce((sum, e) => sum + e[key], 0) / scored.length;
  return {
    n: scored.length,
    mae: mean("abs_error"),
    naiveMae: mean("naive_abs_error"),
    coverage: scored.filter((e) => e.inside).length / scored.length,
  };
}

function renderLive(asset, ledger) {
  const quote = fmt.quoteOf(asset);
  const stats = liveStats(ledger);
  if (!stats) {
    setText("#coverage", "no scored forecasts yet");
    setText("#live-error", "no scored forecasts yet: a forecast is scored once its day's candle is ingested");
    return;
  }
  setText("#coverage", `${fmt.percent(stats.coverage)} of ${fmt.integer(stats.n)} inside the 90% interval`);
  const ratio = stats.naiveMae ? stats.mae / stats.naiveMae : null;
  setText("#live-error", `MAE ${fmt.money(stats.mae, quote)} vs naive ${fmt.money(stats.naiveMae, quote)}` +
    (ratio == null ? "" : ` (ratio ${fmt.number(ratio)}: ${fmt.verdict(ratio).text})`));
}
