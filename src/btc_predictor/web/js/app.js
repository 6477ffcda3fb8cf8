// The dashboard: loads everything for the chosen asset from /api/v1 and wires the controls.

import { api, forgetKey, getKey, setKey } from "./api.js";
import { setupBacktests, loadBacktests } from "./backtests.js";
import { followWidth } from "./charts.js";
import { $, showError } from "./dom.js";
import { loadLedger, renderLedger } from "./ledger.js";
import { loadModels, renderModels, setupTraining } from "./models.js";
import { loadForecast, renderActiveModel, renderHeader, renderMetrics } from "./overview.js";
import { loadRisk, renderRisk } from "./risk.js";

const state = { assets: [], asset: "" };

const options = () => ({
  historyDays: Number($("#history-days").value),
  horizon: Number($("#horizon").value),
  level: Number($("#level").value),
});

/** Run one section's loader; its failure is shown in that section, never stops the others. */
async function guarded(section, work) {
  try {
    return await work();
  } catch (err) {
    showError(section, err);
    return null;
  }
}

/** Chart, metrics, ledger: the forecast is fetched before the ledger so it shows there. */
async function refreshForecast(row, active, activeRisk) {
  const loaded = await guarded($("#forecast-chart").closest("section"), () => loadForecast(row, active, options()));
  const last = loaded?.candles.at(-1);
  renderHeader(row, last ? last.close : null);
  // Without candles nothing can have been forecast: skip the request, show the empty state.
  const ledger = row.rows ? await guarded($("#ledger-card"), () => loadLedger(row.asset)) : [];
  if (ledger) renderLedger(row.asset, ledger);
  await guarded($("#metrics-card"), async () => renderMetrics(row.asset, loaded?.forecast, active, ledger));
  await guarded($("#risk-card"), async () => renderRisk(row.asset,
    await loadRisk(row, activeRisk, options().horizon), loaded?.forecast, activeRisk));
}

let refreshing = null; // the running refresh: later requests coalesce into one rerun
let rerun = false;

/** Refresh the page; while one refresh runs, further requests become one more run after it
 * (so a slow, older answer can never overwrite a newer one). */
function refreshAll() {
  if (refreshing) {
    rerun = true;
    return refreshing;
  }
  document.body.dataset.busy = "true"; // tests and scripts wait for the page to settle
  refreshing = (async () => {
    do {
      rerun = false;
      await refreshOnce();
    } while (rerun);
  })().finally(() => {
    refreshing = null;
    delete document.body.dataset.busy;
  });
  return refreshing;
}

/** Everything for the current asset; models first (no model → no forecast request). */
async function refreshOnce() {
  const row = state.assets.find((a) => a.asset === state.asset) || { asset: state.asset, rows: 0 };
  const versions = await guarded($("#models-card"), () => loadModels(row.asset));
  // undefined: the versions could not be listed (the error shows); still try the forecast.
  // The forecast is the active *price* version's; a risk version is active beside it.
  const active = versions ? versions.find((v) => v.active && (v.family ?? "price") === "price") || null : undefined;
  const activeRisk = versions ? versions.find((v) => v.active && v.family === "risk") || null : undefined;
  renderActiveModel(active);
  if (versions) renderModels(row.asset, versions, reloadAssets);
  await Promise.all([
    refreshForecast(row, active, activeRisk),
    guarded($("#backtest-card"), () => loadBacktests(row.asset)),
  ]);
  document.body.dataset.loaded = "true";
}

function fillAssets() {
  const select = $("#asset");
  select.replaceChildren(...state.assets.map((a) => new Option(a.asset, a.asset)));
  const wanted = new URLSearchParams(location.hash.slice(1)).get("asset");
  state.asset = state.assets.some((a) => a.asset === wanted) ? wanted : state.assets[0]?.asset || "";
  select.value = state.asset;
}

/** Asset list (it carries the data age), then the whole page. */
async function reloadAssets() {
  showError(document.body, null);
  try {
    state.assets = await api("/api/v1/assets");
  } catch (err) {
    showError(document.body, err);
    return;
  }
  if (!state.asset || !state.assets.some((a) => a.asset === state.asset)) fillAssets();
  if (!state.asset) {
    showError(document.body, new Error("No assets: set BTCP_ASSETS (e.g. BTC-USD) and restart."));
    return;
  }
  await refreshAll();
}

function setupKey() {
  const form = $("#key-form");
  const show = () => {
    const saved = Boolean(getKey());
    $("#key-state").textContent = saved ? "key saved for this tab" : "";
    $("#key-forget").hidden = !saved;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (key) setKey(key);
    $("#api-key").value = "";
    show();
  });
  $("#key-forget").addEventListener("click", () => { forgetKey(); show(); });
  show();
}

function setupControls() {
  $("#asset").addEventListener("change", (event) => {
    state.asset = event.target.value;
    history.replaceState(null, "", `#asset=${encodeURIComponent(state.asset)}`);
    refreshAll();
  });
  for (const id of ["#history-days", "#horizon", "#level"]) $(id).addEventListener("change", refreshAll);
  $("#reload").addEventListener("click", reloadAssets);
  followWidth($("#forecast-chart"));
  followWidth($("#backtest-chart"));
  followWidth($("#risk-chart"));
}

setupKey();
setupControls();
setupTraining(() => state.asset, reloadAssets);
setupBacktests(() => state.asset);
reloadAssets();
