// The API client: JSON in and out, errors turned into words ({detail, code} from the API).

const KEY_STORAGE = "btcp.apiKey";
// The dashboard lives at <root>/ui/; the API at <root>/ (works behind a path prefix too).
const API_ROOT = new URL("../", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

function headersFor(body, auth) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth) {
    const key = getKey();
    if (!key) {
      throw new ApiError(0, "no_key",
        "Enter the API key first (BTCP_API_KEY, or the file api_key in the data directory).");
    }
    headers.Authorization = `Bearer ${key}`;
  }
  return headers;
}

async function parse(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text.slice(0, 300) };
  }
}

/** Call the API; resolves with the JSON body, rejects with an ApiError carrying `detail`. */
export async function api(path, { method = "GET", body, auth = false } = {}) {
  const headers = headersFor(body, auth);
  let response;
  try {
    response = await fetch(new URL(path.replace(/^\//, ""), API_ROOT), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network", `Cannot reach the API: ${err.message}`);
  }
  const data = await parse(response);
  if (!response.ok) {
    const detail = data && data.detail ? String(data.detail) : `HTTP ${response.status}`;
    throw new ApiError(response.status, (data && data.code) || "error", detail);
  }
  return data;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll a job until it ends; `onUpdate(job)` sees every state. Resolves with the final job. */
export async function pollJob(id, onUpdate, intervalMs = 500) {
  for (;;) {
    const job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
    onUpdate(job);
    if (!["queued", "running"].includes(job.status)) return job;
    await sleep(intervalMs);
  }
}

export const enc = encodeURIComponent;
