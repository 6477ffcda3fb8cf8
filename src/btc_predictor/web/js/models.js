// Model versions (promote, roll back) and the training panel (a job polled to its end).

import { api, enc, pollJob } from "./api.js";
import { $, el, setText, showEmpty, showError } from "./dom.js";
import * as fmt from "./format.js";
import { noModelMessage } from "./overview.js";

const modelsCard = () => $("#models-card");
const trainPanel = () => $("#training-panel");

export async function loadModels(asset) {
  return api(`/api/v1/models?asset=${enc(asset)}`);
}

function actionCell(version, onChange) {
  if (version.active) return el("td", {}, "");
  if (version.pruned) return el("td", { class: "muted" }, "artifacts pruned");
  const button = el("button", {
    type: "button",
    "data-promote": version.id,
    "aria-label": `Promote version ${version.id} (${version.model})`,
    onclick: () => promote(version, button, onChange),
  }, "Promote");
  return el("td", {}, button);
}

function versionRow(asset, version, onChange) {
  const risk = version.family === "risk";
  // Risk errors are range MAEs in percentage points of the previous close, not money.
  const quote = fmt.quoteOf(asset);
  const error = (value) => (risk && value != null ? `${fmt.number(value)} pp` : fmt.money(value, quote));
  const verdict = fmt.verdict(version.holdout_mase);
  const status = version.active
    ? el("span", { class: "badge active" }, "active")
    : el("span", { class: "muted" }, version.pruned ? "pruned" : "stored");
  return el("tr", { "data-version-id": version.id, "data-family": version.family ?? "price",
    class: version.active ? "is-active" : null },
    el("th", { scope: "row" }, `v${version.id}`),
    el("td", {}, risk ? `${version.model} (risk)` : version.model),
    el("td", {}, fmt.day(version.created_at)),
    el("td", {}, `${fmt.day(version.train_start)} – ${fmt.day(version.train_end)}`),
    el("td", { class: "num", title: verdict.text },
      fmt.number(version.holdout_mase), " ", el("span", { class: `badge ${verdict.key}` }, verdict.text)),
    el("td", { class: "num" }, error(risk ? version.metrics?.range_mae : version.metrics?.mae)),
    el("td", { class: "num" }, error(version.baseline?.naive?.mae)),
    el("td", { class: "num" }, fmt.percent(version.metrics?.directional_accuracy)),
    el("td", {}, status),
    actionCell(version, onChange));
}

export function renderModels(asset, versions, onChange) {
  const card = modelsCard();
  showError(card, null);
  showEmpty(card, versions.length ? null : noModelMessage(asset));
  $("#model-table").hidden = !versions.length;
  $("#model-table tbody").replaceChildren(...versions.map((v) => versionRow(asset, v, onChange)));
  const rollback = $("#rollback");
  rollback.disabled = !versions.length;
  rollback.onclick = () => rollBack(asset, rollback, onChange);
}

async function promote(version, button, onChange) {
  button.disabled = true;
  try {
    const promoted = await api(`/api/v1/models/${version.id}/promote`, { method: "POST", auth: true });
    setText("#models-status", `Version ${promoted.id} (${promoted.model}) is now active.`);
    await onChange();
  } catch (err) {
    showError(modelsCard(), err);
    button.disabled = false;
  }
}

async function rollBack(asset, button, onChange) {
  button.disabled = true;
  try {
    const active = await api(`/api/v1/models/${enc(asset)}/rollback`, { method: "POST", auth: true });
    setText("#models-status", `Rolled back: version ${active.id} (${active.model}) is active again.`);
    await onChange();
  } catch (err) {
    showError(modelsCard(), err);
  } finally {
    button.disabled = false;
  }
}

function trainBody(asset) {
  const body = { asset, promote: $("#train-promote").value };
  const model = $("#train-model").value;
  const epochs = $("#train-epochs").value;
  if (model) body.model = model;
  if (epochs) body.epochs = Number(epochs);
  return body;
}

function showJob(job) {
  const panel = trainPanel();
  panel.dataset.jobStatus = job.status;
  const bar = $("#train-progress");
  bar.hidden = false;
  bar.value = job.status === "succeeded" ? 1 : job.progress || 0;
  setText("#train-status", `Job ${job.id.slice(0, 8)}: ${job.status}` +
    (job.message ? ` (${job.message})` : "") + ` · ${fmt.percent(job.progress || 0, 0)}`);
}

function showTrainResult(asset, job) {
  const box = $("#train-result");
  if (job.status !== "succeeded") {
    box.replaceChildren(el("p", { class: "error" }, `Training ${job.status}: ${job.error || "no reason given"}`));
    return;
  }
  const result = job.result;
  // Training the defaults stores a risk version too: it is reported first, as it ran first.
  const reports = result.risk ? [result.risk, result] : [result];
  box.replaceChildren(...reports.map((r) => trainReport(asset, r)));
}

function trainReport(asset, result) {
  const verdict = fmt.verdict(result.metrics?.mase);
  const mase = result.family === "risk" ? "Holdout range MASE (vs naive-range)" : "Holdout MASE";
  return el("ul", { class: "result" },
    el("li", {}, `Stored as version ${result.version} (${result.model}) in ${fmt.number(result.training_duration, 1)} s.`),
    el("li", {}, `${mase} ${fmt.number(result.metrics?.mase)}: ${verdict.text}.`),
    el("li", {}, result.promoted ? `Promoted: ${result.promotion_reason}` : `Not promoted: ${result.promotion_reason}`),
    el("li", {}, `${fmt.integer(result.data_points_used)} days, ${fmt.day(result.train_start)} – ${fmt.day(result.train_end)} (${asset}).`));
}

/** Wire the training form: start a job, poll it, show the result, then refresh the page. */
export function setupTraining(currentAsset, onDone) {
  $("#train-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const panel = trainPanel();
    const button = $("#train-start");
    const asset = currentAsset();
    showError(panel, null);
    $("#train-result").replaceChildren();
    button.disabled = true;
    try {
      const job = await api("/api/v1/train", { method: "POST", body: trainBody(asset), auth: true });
      const done = await pollJob(job.id, showJob);
      showTrainResult(asset, done);
      await onDone();
    } catch (err) {
      showError(panel, err);
    } finally {
      button.disabled = false;
    }
  });
}
