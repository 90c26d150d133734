// The Admin Cockpit: upload photos, watch their jobs, read metrics and costs.
// Plain ES module, no build step, no third-party code. Everything is built with
// DOM calls (never innerHTML), so file names from uploads stay text.

const API = new URL("../api/v1/admin/", document.baseURI);
const TOKEN_KEY = "image-tagger.token";
const ACTIVE = new Set(["PENDING", "RUNNING"]);
const FINAL = new Set(["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"]);
const POLL_MS = 1500;
const RETRY_MS = 5000;
const ITEMS_PAGE = 100;
const HISTOGRAM_IMAGES = 300;
const HISTOGRAM_MIN_IMAGES = 3; // fewer values are listed, not binned

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "line", "title", "g", "text"].includes(tag);
  if (tag === "wbr") return document.createElement("wbr");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else if (key in el && !svg) el[key] = value;
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function statusBadge(status) {
  const known = /^[A-Z_]+$/.test(status) ? status.toLowerCase() : "unknown";
  return h("span", { class: `badge status-${known}` }, status.replaceAll("_", " "));
}

function parseTime(value) {
  if (!value) return null;
  // The API sends UTC; a value without an offset is UTC too.
  return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`);
}

function formatTime(value) {
  const date = parseTime(value);
  if (!date) return "–";
  return date.toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit",
  });
}

function formatShortTime(value) {
  // For narrow columns: the time of day today, else the day.
  const date = parseTime(value);
  if (!date) return "–";
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function timeCell(value) {
  // Both forms; the stylesheet shows the short one where the column is narrow.
  return [h("span", { class: "time-long" }, formatTime(value)),
    h("span", { class: "time-short", title: formatTime(value) }, formatShortTime(value))];
}

function errorDetail(job) {
  // The summary reads "N failed; <file>: <reason> (+k more)"; the count is
  // shown on its own, so only what follows it is repeated here.
  return (job.error_summary || "").replace(/^\d+ failed;\s*/, "");
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString();
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 0.001 || abs >= 1e5)
    ? value.toExponential(3)
    : value.toFixed(abs < 1 ? 4 : 3);
}

function formatUsd(value) {
  if (value === null || value === undefined) return "unpriced";
  return `$${Number(value).toFixed(value !== 0 && Math.abs(value) < 0.01 ? 5 : 2)}`;
}

function notice(text) {
  const box = $("notices");
  const item = h("div", { class: "notice" }, h("span", {}, text),
    h("button", { type: "button", class: "link", onclick: () => item.remove() },
      "Dismiss"));
  box.append(item);
}

function showError(elementId, error) {
  const el = $(elementId);
  el.textContent = error ? error.message : "";
  el.hidden = !error;
}

// ------------------------------------------------------------------ API calls

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function describeDetail(status, body, fallback) {
  let detail = body && body.detail;
  if (Array.isArray(detail)) {
    detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return `${status} ${detail || fallback || "the server gave no reason"}`;
}

async function errorFrom(response, what) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = new ApiError(response.status,
    `${what}: ${describeDetail(response.status, body, response.statusText)}`);
  error.detail = body && typeof body.detail === "string" ? body.detail : null;
  error.challenge = response.headers.get("WWW-Authenticate");
  return error;
}

async function request(path, what, options = {}) {
  let response;
  try {
    response = await fetch(new URL(path, API), {
      ...options,
      headers: { ...authHeaders(), ...(options.headers || {}) },
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, `${what}: the server could not be reached (${err.message}); `
      + "is it running?");
  }
  if (!response.ok) {
    const error = await errorFrom(response, what);
    if (response.status === 401) {
      showSignIn(error.detail || error.message, error.challenge);
    }
    if (response.status === 403) showForbidden(error.detail || error.message);
    throw error;
  }
  return response;
}

async function getJson(path, what) {
  return (await request(path, what)).json();
}

// ------------------------------------------------------------------- sign-in

function takeTokenFromUrl() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const token = hash.get("token") || query.get("token");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  // Keep the token out of the address bar, history and bookmarks.
  history.replaceState(null, "", location.pathname);
}

let gated = true; // until the first answer says who we are

function setSession(parts, { signOut = false } = {}) {
  // The top bar says who this tab is signed in as, and how, or that it is not.
  $("session-state").replaceChildren(...parts);
  $("sign-out").hidden = !signOut;
}

function signedInAs(role, how) {
  return ["Signed in as ", h("strong", { class: "role" }, role), ` · ${how}`];
}

function roleFrom(detail) {
  // A 403 names the role the server saw: "... your role is 'tagger'", or
  // "unknown role 'x'; ..." when the proxy sent one that does not exist.
  const match = /role (?:is )?'([^']+)'/.exec(detail || "");
  return match ? { role: match[1], known: !/unknown role/.test(detail) } : null;
}

function showSignIn(reason, challenge = "Bearer") {
  // The 401's challenge says what would let us in: a bearer token (token
  // mode), or only the proxy's role header (header mode), which a browser tab
  // cannot supply, so no token form is offered then.
  gated = true;
  stopAllTimers();
  const viaProxy = Boolean(challenge) && !/^bearer\b/i.test(challenge);
  // On a first visit no token was sent: the server's reason ("missing bearer
  // token; send ...") is meant for scripts, and the form says it better.
  const refused = Boolean(sessionStorage.getItem(TOKEN_KEY));
  // A token the server refused signs nobody in: it is dropped, so the page
  // never says "Not signed in" beside a "Sign out" button.
  sessionStorage.removeItem(TOKEN_KEY);
  $("cockpit").hidden = true;
  $("forbidden").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-title").textContent = viaProxy ? "No role from the proxy" : "Sign in";
  $("token-sign-in").hidden = viaProxy;
  $("proxy-sign-in").hidden = !viaProxy;
  $("sign-in-reason").textContent = refused || viaProxy ? reason || "" : "";
  setSession([viaProxy ? "Not signed in: the proxy sent no role" : "Not signed in"]);
  if (!viaProxy) $("token-input").focus();
}

function showForbidden(detail) {
  // Signed in, but not as an admin. Without a token the role came from the
  // proxy (token mode answers 401 to a request without one), so the way in is
  // the proxy's header, not another token.
  gated = true;
  stopAllTimers();
  const token = Boolean(sessionStorage.getItem(TOKEN_KEY));
  const seen = roleFrom(detail);
  $("cockpit").hidden = true;
  $("sign-in").hidden = true;
  $("forbidden").hidden = false;
  $("forbidden-detail").textContent = detail;
  $("forbidden-token").hidden = !token;
  $("forbidden-proxy").hidden = token;
  const how = token ? "token, this tab only" : "role from the proxy";
  if (seen && seen.known) {
    setSession(signedInAs(seen.role, `not admin · ${how}`), { signOut: token });
  } else if (seen) {
    setSession([`Not signed in: unknown role '${seen.role}'`], { signOut: token });
  } else {
    setSession([`Signed in without the admin role · ${how}`], { signOut: token });
  }
}

function showCockpit() {
  gated = false;
  $("sign-in").hidden = true;
  $("forbidden").hidden = true;
  $("cockpit").hidden = false;
  // Every request the cockpit makes needs the admin role, so this is one.
  const token = Boolean(sessionStorage.getItem(TOKEN_KEY));
  setSession(signedInAs("admin", token ? "token, this tab only"
    : "role from the proxy's X-User-Role header"), { signOut: token });
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  closeJob();
  showSignIn("Signed out.");
}

async function start() {
  takeTokenFromUrl();
  try {
    await loadJobs();
  } catch (error) {
    if (error.status === 401 || error.status === 403) return;
    showCockpit();
    showError("jobs-error", error);
    return;
  }
  loadCosts();
}

// ------------------------------------------------------------------- uploads

let uploadCount = 0;

function uploadFiles(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  uploadCount += 1;
  const rows = files.map((file) => {
    const bar = h("progress", { max: file.size || 1, value: 0 });
    const state = h("span", { class: "verdict muted" }, "waiting");
    const row = h("li", { class: "upload-file" },
      h("span", { class: "name", title: file.name }, file.name),
      h("span", { class: "size muted small" }, formatBytes(file.size)),
      bar, state);
    return { file, bar, state, row };
  });
  const heading = h("p", { class: "upload-head" },
    `Upload ${uploadCount}: ${files.length} file${files.length === 1 ? "" : "s"}`);
  const batch = h("div", { class: "upload-batch", "aria-live": "polite" }, heading,
    h("ul", { class: "upload-files" }, rows.map((r) => r.row)));
  $("uploads").prepend(batch);
  sendFiles(rows, heading);
}

function quoteFilename(name) {
  // As browsers write it: quotes and line breaks escaped, the rest as UTF-8.
  return name.replace(/\\/g, "\\\\").replace(/"/g, "%22")
    .replace(/\r/g, "%0D").replace(/\n/g, "%0A");
}

function multipartBody(files) {
  // One request for the whole batch (one job), built as a Blob whose parts are
  // the File objects themselves: nothing is read into memory, and the byte
  // offset where each file starts is known, so per-file progress is exact.
  const boundary = `----image-tagger-${crypto.getRandomValues(new Uint32Array(4))
    .join("-")}`;
  const encoder = new TextEncoder();
  const parts = [];
  const spans = [];
  let offset = 0;
  for (const file of files) {
    const head = encoder.encode(`--${boundary}\r\nContent-Disposition: form-data; `
      + `name="files"; filename="${quoteFilename(file.name)}"\r\n`
      + "Content-Type: application/octet-stream\r\n\r\n");
    offset += head.length;
    spans.push({ start: offset, end: offset + file.size });
    offset += file.size + 2;
    parts.push(head, file, encoder.encode("\r\n"));
  }
  parts.push(encoder.encode(`--${boundary}--\r\n`));
  return { blob: new Blob(parts), spans, boundary };
}

function sendFiles(rows, heading) {
  const { blob, spans, boundary } = multipartBody(rows.map((r) => r.file));
  const xhr = new XMLHttpRequest();
  xhr.open("POST", new URL("upload", API));
  xhr.setRequestHeader("Content-Type", `multipart/form-data; boundary=${boundary}`);
  for (const [name, value] of Object.entries(authHeaders())) {
    xhr.setRequestHeader(name, value);
  }
  xhr.responseType = "json";

  xhr.upload.addEventListener("progress", (event) => {
    rows.forEach((r, i) => {
      const sent = Math.max(0, Math.min(event.loaded - spans[i].start, r.file.size));
      r.bar.value = r.file.size ? sent : (event.loaded >= spans[i].end ? 1 : 0);
      const done = event.loaded >= spans[i].end;
      r.state.textContent = done ? "sent, checking…"
        : sent > 0 ? `${Math.round((100 * sent) / (r.file.size || 1))}%` : "waiting";
    });
  });
  xhr.upload.addEventListener("load", () => {
    for (const r of rows) {
      r.bar.value = r.bar.max;
      r.state.textContent = "sent, checking…";
    }
  });
  xhr.addEventListener("load", () => finishUpload(xhr, rows, heading));
  xhr.addEventListener("error", () => failUpload(rows, heading,
    "Upload failed: the connection to the server was lost; nothing may have been "
    + "stored. Check that the server is running and upload again."));
  xhr.addEventListener("abort", () => failUpload(rows, heading, "Upload aborted."));
  xhr.send(blob);
}

function failUpload(rows, heading, message) {
  heading.append(" – ", h("span", { class: "error-text" }, message));
  for (const r of rows) {
    r.state.textContent = "not stored";
    r.state.className = "verdict verdict-rejected";
  }
}

function finishUpload(xhr, rows, heading) {
  const body = xhr.response;
  if (xhr.status !== 202 && xhr.status !== 200) {
    failUpload(rows, heading,
      `Upload refused: ${describeDetail(xhr.status, body, xhr.statusText)}`);
    if (xhr.status === 401) {
      showSignIn(body && body.detail, xhr.getResponseHeader("WWW-Authenticate"));
    }
    if (xhr.status === 403) showForbidden(body && body.detail);
    return;
  }
  heading.append(" → ", h("button", {
    type: "button", class: "link", onclick: () => openJob(body.job_id),
  }, `job #${body.job_id}`));
  (body.files || []).forEach((verdict, i) => {
    const r = rows[i];
    if (!r) return;
    r.state.className = `verdict verdict-${verdict.status}`;
    r.state.replaceChildren(verdict.reason
      ? `${verdict.status}: ${verdict.reason}` : verdict.status);
    const earlier = earlierText(verdict.earlier);
    if (earlier) {
      r.state.classList.add(`earlier-${earlier.kind}`);
      r.state.append(h("span", { class: "earlier" }, earlier.parts));
    }
  });
  loadJobs().catch(() => {});
}

function earlierText(earlier) {
  // A file uploaded before: how that earlier job's item ended (or stands).
  if (!earlier) return null;
  const job = h("button", {
    type: "button", class: "link", onclick: () => openJob(earlier.job_id),
  }, `job #${earlier.job_id}`);
  switch (earlier.status) {
    case "FAILED":
      return { kind: "failed", parts: ["Its earlier analysis failed in ", job,
        `: ${earlier.error_message || "no reason given"}. This job tries again.`] };
    case "COMPLETED":
      return { kind: "completed", parts: ["Analysed before in ", job, "."] };
    case "CANCELLED":
      return { kind: "cancelled", parts: ["Its earlier ", job,
        " was cancelled before analysing it; this job does."] };
    default:
      return { kind: "pending", parts: [`Still ${earlier.status.toLowerCase()} in `,
        job, "."] };
  }
}

function setUpDropzone() {
  const zone = $("dropzone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    uploadFiles(input.files);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    uploadFiles(event.dataTransfer.files);
  });
}

// ---------------------------------------------------------------------- jobs

let jobsTimer = null;
let activeJobs = new Set();

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function etaText(job) {
  // The server's estimate for a running job, once its first items are done.
  if (job.status !== "RUNNING" || job.eta_seconds === null
      || job.eta_seconds === undefined) return "";
  return `about ${formatDuration(job.eta_seconds)} left`;
}

function scheduleJobs(delay) {
  clearTimeout(jobsTimer);
  jobsTimer = setTimeout(() => loadJobs().catch(() => {}), delay);
}

async function loadJobs() {
  clearTimeout(jobsTimer);
  let data;
  try {
    data = await getJson("upload/jobs?limit=20", "Loading the jobs failed");
  } catch (error) {
    if (error.status !== 401 && error.status !== 403) {
      showError("jobs-error", error);
      $("jobs-refresh-state").textContent = `Retrying in ${RETRY_MS / 1000} s`;
      scheduleJobs(RETRY_MS);
    }
    throw error;
  }
  if (gated) showCockpit();
  showError("jobs-error", null);
  renderJobs(data);
  // A job that was running and is now over has spent what it will: the cost
  // ledger is read again.
  const active = new Set(data.jobs.filter((job) => ACTIVE.has(job.status))
    .map((job) => job.id));
  if ([...activeJobs].some((id) => !active.has(id))) loadCosts();
  activeJobs = active;

  const running = data.jobs.some((job) => ACTIVE.has(job.status));
  const now = new Date().toLocaleTimeString();
  $("jobs-refresh-state").textContent = running
    ? `Updated ${now}; refreshing while jobs run`
    : `Updated ${now}`;
  if (running) scheduleJobs(POLL_MS);
  return data;
}

function renderJobs(data) {
  const body = $("jobs-table").tBodies[0];
  body.replaceChildren(...data.jobs.map((job) => h("tr", {
    class: job.id === openJobId ? "selected" : null,
  },
  h("th", { scope: "row", "data-label": "Job" }, h("button", {
    type: "button", class: "link", onclick: () => openJob(job.id),
    "aria-label": `Open job ${job.id}`,
  }, `#${job.id}`)),
  h("td", { "data-label": "Status" }, statusBadge(job.status)),
  h("td", { class: "progress-cell", "data-label": "Progress" },
    h("progress", { max: job.total_items || 1, value: job.completed_items,
      "aria-label": `job ${job.id} progress` }),
    h("span", { class: "small" }, ` ${job.completed_items}/${job.total_items}`),
    etaText(job) ? h("span", { class: "eta small muted" }, etaText(job)) : null),
  h("td", { class: "col-errors", "data-label": "Errors" }, job.failed_items
    ? h("span", {}, h("strong", { class: "error-text" }, `${job.failed_items} failed`),
      errorDetail(job) ? h("span", { class: "small clamp", title: job.error_summary },
        errorDetail(job)) : "")
    : h("span", { class: "muted" }, "0")),
  h("td", { class: "small col-created", "data-label": "Created" },
    timeCell(job.created_at)))));

  $("jobs-empty").hidden = data.jobs.length > 0;
  $("jobs-table").hidden = data.jobs.length === 0;
  const counts = Object.entries(data.counts || {}).filter(([, n]) => n > 0)
    .map(([state, n]) => `${state.replaceAll("_", " ").toLowerCase()}: ${n}`);
  $("jobs-counts").textContent = counts.length ? `All jobs – ${counts.join(", ")}` : "";
}

// ----------------------------------------------------------------- one job

let openJobId = null;
let itemsOffset = 0;
let jobTimer = null;
let jobStream = null;
let histogramsFor = null;
let currentItemImage = null;
let shownJob = null; // the open job's summary and the page of items shown
const imageCache = new Map();

function closeJob() {
  openJobId = null;
  stopJobUpdates();
  $("job").hidden = true;
  for (const row of $("jobs-table").tBodies[0].rows) row.classList.remove("selected");
}

function stopJobUpdates() {
  clearTimeout(jobTimer);
  if (jobStream) jobStream.abort();
  jobStream = null;
}

function stopAllTimers() {
  clearTimeout(jobsTimer);
  stopJobUpdates();
}

async function openJob(jobId) {
  stopJobUpdates();
  openJobId = jobId;
  itemsOffset = 0;
  histogramsFor = null;
  currentItemImage = null;
  $("job-title").textContent = `Job #${jobId}`;
  shownJob = null;
  $("job-summary").replaceChildren();
  $("items-table").tBodies[0].replaceChildren();
  jobMessage(null);
  $("job-cancel").hidden = true;
  $("job-retry").hidden = true;
  $("item").hidden = true;
  $("histograms").hidden = true;
  $("job").hidden = false;
  $("job").focus();
  for (const row of $("jobs-table").tBodies[0].rows) {
    row.classList.toggle("selected", row.cells[0].textContent === `#${jobId}`);
  }
  const job = await loadJob();
  if (job && !FINAL.has(job.status)) followJob(jobId);
}

async function loadJob() {
  const jobId = openJobId;
  if (jobId === null) return null;
  let job;
  try {
    job = await getJson(
      `upload/jobs/${jobId}?items_offset=${itemsOffset}&items_limit=${ITEMS_PAGE}`,
      `Loading job #${jobId} failed`);
  } catch (error) {
    if (jobId === openJobId) showError("job-error", error);
    return null;
  }
  if (jobId !== openJobId) return null;
  showError("job-error", null);
  renderJob(job);
  if (FINAL.has(job.status)) {
    stopJobUpdates();
    $("job-live").textContent = "Finished";
    if (histogramsFor !== jobId) {
      histogramsFor = jobId;
      loadHistograms(jobId);
    }
  }
  return job;
}

function renderJob(job) {
  shownJob = { ...job, items: [...job.items] };
  renderSummary(job);
  renderItems();
}

function renderSummary(job) {
  $("job-summary").replaceChildren(
    h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, statusBadge(job.status)),
      h("dt", {}, "Progress"), h("dd", {},
        h("progress", { max: job.total_items || 1, value: job.completed_items }),
        ` ${job.completed_items}/${job.total_items} completed`),
      h("dt", {}, "Errors"), h("dd", {}, job.failed_items
        ? [h("strong", { class: "error-text" }, `${job.failed_items} failed`),
          errorDetail(job) ? h("span", { class: "error-detail" }, errorDetail(job)) : null]
        : "none"),
      job.cancelled_items ? [h("dt", {}, "Cancelled"),
        h("dd", {}, `${job.cancelled_items} item${job.cancelled_items === 1 ? "" : "s"}`)]
        : null,
      h("dt", {}, "Created"), h("dd", {}, formatTime(job.created_at)),
      h("dt", {}, "Finished"), h("dd", {}, formatTime(job.finished_at))));
  renderActions();
}

function renderActions() {
  // Cancel while the job may still start items; retry when a failed item has a
  // stored image (a file rejected at upload was never stored, so it cannot be).
  const job = shownJob;
  $("job-cancel").hidden = !job || !ACTIVE.has(job.status)
    || Boolean(job.cancel_requested_at);
  const retriable = job && job.failed_items > 0 && (
    job.items.some((item) => item.status === "FAILED" && item.image_id)
    || job.items.length < job.items_total);
  $("job-retry").hidden = !retriable;
}

function renderItems() {
  const job = shownJob;
  const body = $("items-table").tBodies[0];
  body.replaceChildren(...job.items.map((item) => itemRow(item)));
  const total = job.items_total;
  $("items-pager").hidden = total <= ITEMS_PAGE;
  $("items-range").textContent =
    `${job.items_offset + 1}–${job.items_offset + job.items.length} of ${total}`;
  $("items-prev").disabled = job.items_offset === 0;
  $("items-next").disabled = job.items_offset + job.items.length >= total;
}

const thumbnails = new Map();

function itemRow(item) {
  const time = item.seconds !== null && item.seconds !== undefined
    ? `${item.seconds.toFixed(2)} s` : item.started_at ? "running" : "–";
  const row = h("tr", { class: item.image_id === currentItemImage ? "selected" : null },
    h("td", { class: "thumb-cell col-thumb", "data-label": "Image" }, thumbnail(item)),
    h("td", { class: "col-file", "data-label": "File" }, h("button", {
      type: "button", class: "link filename", onclick: () => openItem(item),
      title: item.filename,
    }, breakable(item.filename))),
    h("td", { "data-label": "Status" }, statusBadge(item.status)),
    h("td", { class: "num col-attempts", "data-label": "Attempts" },
      String(item.attempts)),
    h("td", { class: "small col-time", "data-label": "Time", title: `started ${formatTime(item.started_at)}, `
      + `finished ${formatTime(item.finished_at)}` }, time),
    h("td", { class: "small col-note", "data-label": "Error or note" }, item.error_message
      ? h("span", { class: "error-text" }, item.error_message)
      : h("span", { class: "muted" }, item.note || "")));
  return row;
}

function thumbnail(item) {
  // Images need the Authorization header, which <img src> cannot send, so the
  // thumbnail is fetched and drawn on a canvas (no blob: URL, which the page's
  // Content-Security-Policy does not allow).
  const canvas = h("canvas", { class: "thumb", width: 48, height: 48,
    "aria-label": `thumbnail of ${item.filename}`, role: "img" });
  if (!item.image_id || item.status !== "COMPLETED") return canvas;
  let bitmap = thumbnails.get(item.image_id);
  if (!bitmap) {
    bitmap = request(`images/${item.image_id}/thumbnail`, "Thumbnail")
      .then((r) => r.blob()).then((blob) => createImageBitmap(blob));
    thumbnails.set(item.image_id, bitmap);
    bitmap.catch(() => thumbnails.delete(item.image_id));
  }
  bitmap.then((bmp) => drawFitted(canvas, bmp)).catch((error) => {
    canvas.setAttribute("aria-label", "no thumbnail");
    canvas.title = error.message;
  });
  return canvas;
}

function drawFitted(canvas, bitmap) {
  const ctx = canvas.getContext("2d");
  const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
  const w = bitmap.width * scale;
  const hgt = bitmap.height * scale;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - hgt) / 2, w, hgt);
}

function followJob(jobId) {
  // Server-sent events as items finish, read with fetch so the Authorization
  // header goes along. Each event is applied as it comes: an item's row and
  // the summary change without asking for the job again; only its end (or a
  // stream that breaks off) reloads it. A server without the stream is polled.
  stopJobUpdates();
  const controller = new AbortController();
  jobStream = controller;
  $("job-live").textContent = "Live";
  fetch(new URL(`upload/jobs/${jobId}/events`, API), {
    headers: { ...authHeaders(), Accept: "text/event-stream" },
    signal: controller.signal,
    cache: "no-store",
  }).then(async (response) => {
    if (!response.ok || !response.body) {
      if (response.status !== 404 && response.status !== 405) {
        const error = await errorFrom(response, "Live updates failed");
        showError("job-error", error);
      }
      pollJob(jobId);
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let ended = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done || jobId !== openJobId) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (applyEvent(jobId, block) === "end") ended = true;
      }
    }
    if (jobStream === controller) jobStream = null;
    if (jobId !== openJobId) return;
    const job = await loadJob();
    if (!ended && job && !FINAL.has(job.status)) pollJob(jobId);
  }).catch((error) => {
    if (error.name === "AbortError") return;
    pollJob(jobId);
  });
}

function applyEvent(jobId, block) {
  // One server-sent event: "event:" and "data:" lines (comments are skipped).
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length || jobId !== openJobId || !shownJob) return null;
  let payload;
  try {
    payload = JSON.parse(data.join("\n"));
  } catch {
    return null;
  }
  if (name === "job" && payload.id === jobId) {
    Object.assign(shownJob, payload);
    renderSummary(shownJob);
  } else if (name === "item" && payload.id !== undefined) {
    const index = shownJob.items.findIndex((item) => item.id === payload.id);
    if (index >= 0) {
      shownJob.items[index] = { ...shownJob.items[index], ...payload };
      const row = $("items-table").tBodies[0].rows[index];
      if (row) row.replaceWith(itemRow(shownJob.items[index]));
      renderActions();
    }
  }
  return name;
}

function pollJob(jobId) {
  if (jobId !== openJobId) return;
  jobStream = null;
  $("job-live").textContent = `Refreshing every ${POLL_MS / 1000} s`;
  clearTimeout(jobTimer);
  jobTimer = setTimeout(async () => {
    const job = await loadJob();
    if (job === null && jobId === openJobId && !gated) {
      jobTimer = setTimeout(() => pollJob(jobId), RETRY_MS);
    } else if (job && !FINAL.has(job.status)) {
      pollJob(jobId);
    }
  }, POLL_MS);
}

// ------------------------------------------------- operating the open job

function jobMessage(text, refused = false) {
  const el = $("job-message");
  el.textContent = text || "";
  el.hidden = !text;
  el.classList.toggle("refused", refused);
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

async function operateJob(action) {
  const jobId = openJobId;
  if (jobId === null) return;
  const button = $(`job-${action}`);
  button.disabled = true;
  const what = action === "cancel" ? "Cancel refused" : "Retry refused";
  try {
    const response = await request(`upload/jobs/${jobId}/${action}`, what,
      { method: "POST" });
    const result = await response.json();
    if (jobId !== openJobId) return;
    jobMessage(action === "cancel"
      ? `Cancelled ${plural(result.items, "pending item")}; items already running `
        + `finish first, then the job is ${result.job.status === "CANCELLED"
          ? "over" : "marked cancelled"}.`
      : `${plural(result.items, "failed item")} queued again; the job is `
        + `${result.job.status.toLowerCase()}.`);
  } catch (error) {
    if (jobId !== openJobId) return;
    if (error.status === 409) {
      // The job moved on since it was shown (or has nothing of that kind).
      jobMessage(`${error.message}. The job is shown below as it is now.`, true);
    } else if (error.status !== 401 && error.status !== 403) {
      jobMessage(error.message, true);
    }
  } finally {
    button.disabled = false;
  }
  if (jobId !== openJobId) return;
  const job = await loadJob();
  loadJobs().catch(() => {});
  if (job && !FINAL.has(job.status) && !jobStream) followJob(jobId);
}

function downloadName(response, fallback) {
  const match = /filename="?([^";]+)"?/.exec(
    response.headers.get("Content-Disposition") || "");
  return match ? match[1] : fallback;
}

async function exportJob(format) {
  // A link cannot carry the bearer token, so the file is fetched and handed to
  // the browser as a download from memory.
  const jobId = openJobId;
  if (jobId === null) return;
  const button = $(`job-export-${format}`);
  button.disabled = true;
  try {
    const response = await request(`upload/jobs/${jobId}/export?format=${format}`,
      `Exporting job #${jobId} as ${format.toUpperCase()} failed`);
    const blob = await response.blob();
    const name = downloadName(response, `job-${jobId}.${format}`);
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    jobMessage(`Downloaded ${name} (${formatBytes(blob.size)}).`);
  } catch (error) {
    if (error.status !== 401 && error.status !== 403) jobMessage(error.message, true);
  } finally {
    button.disabled = false;
  }
}

async function imageDetail(imageId) {
  if (!imageCache.has(imageId)) {
    const promise = getJson(`images/${imageId}`, `Loading image ${imageId} failed`);
    imageCache.set(imageId, promise);
    promise.catch(() => imageCache.delete(imageId));
  }
  return imageCache.get(imageId);
}

// ------------------------------------------------------------- one item

async function openItem(item) {
  const panel = $("item");
  panel.hidden = false;
  currentItemImage = item.image_id;
  for (const row of $("items-table").tBodies[0].rows) {
    row.classList.toggle("selected", row.cells[1].textContent === item.filename);
  }
  const close = h("button", { type: "button", onclick: () => {
    panel.hidden = true;
    currentItemImage = null;
    markHistograms(null);
  } }, "Close");
  const head = h("div", { class: "panel-head" },
    h("h3", {}, item.filename), h("div", { class: "tools" }, close));
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Status"), h("dd", {}, statusBadge(item.status)),
    h("dt", {}, "Attempts"), h("dd", {}, String(item.attempts)),
    h("dt", {}, "Started"), h("dd", {}, formatTime(item.started_at)),
    h("dt", {}, "Finished"), h("dd", {}, formatTime(item.finished_at)),
    item.error_message ? [h("dt", {}, "Error"),
      h("dd", { class: "error-text reason" }, item.error_message)] : null,
    item.note ? [h("dt", {}, "Note"), h("dd", {}, item.note)] : null);
  panel.replaceChildren(head, facts);
  panel.focus();

  if (!item.image_id) {
    panel.append(h("p", { class: "muted" }, "This file was not stored, so it has no "
      + "metrics."));
    markHistograms(null);
    return;
  }
  const loading = h("p", { class: "muted" }, "Loading metrics…");
  panel.append(loading);
  let image;
  try {
    image = await imageDetail(item.image_id);
  } catch (error) {
    loading.replaceWith(h("p", { class: "error-text", role: "alert" }, error.message));
    return;
  }
  if (currentItemImage !== item.image_id) return;
  loading.replaceWith(...imageSections(image, item));
  markHistograms(image);
}

function imageSections(image, item) {
  const big = h("canvas", { class: "preview", width: 256, height: 256, role: "img",
    "aria-label": `thumbnail of ${image.filename}` });
  thumbnails.get(image.id)?.then((bmp) => drawFitted(big, bmp)).catch(() => {});
  const meta = h("p", { class: "small muted" },
    `${image.format} · ${image.width}×${image.height} px · `
    + `${formatBytes(image.size_bytes)} · SHA-256 ${image.sha256.slice(0, 12)}…`);
  const analysis = image.analysis;
  if (!analysis) {
    return [big, meta, h("p", { class: "empty" }, item.status === "FAILED"
      ? "No metrics: the analysis of this image failed (the error is above)."
      : "Not analysed yet: metrics appear when its item completes.")];
  }
  const notes = analysis.metric_notes || {};
  const metrics = h("table", { class: "grid metrics" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Metric"),
      h("th", { scope: "col", class: "num" }, "Value"))),
    h("tbody", {}, Object.entries(analysis.metrics).map(([key, value]) => h("tr", {},
      h("th", { scope: "row" }, metricName(key)),
      h("td", { class: "num" }, value === null
        ? h("span", { class: "muted", title: notes[key] || "" },
          `– ${notes[key] ? `(${notes[key]})` : ""}`)
        : formatNumber(value))))));
  return [
    h("div", { class: "item-top" }, big, h("div", {}, meta,
      h("p", { class: "small muted" },
        `pipeline ${analysis.pipeline_version}, analysed in `
        + `${analysis.seconds !== null ? analysis.seconds.toFixed(2) : "?"} s`))),
    h("h4", {}, "Metrics"), h("div", { class: "table-wrap" }, metrics),
    h("h4", {}, "VLM ratings"), vlmSection(analysis.vlm || {}),
  ];
}

function vlmSection(vlm) {
  const names = Object.keys(vlm);
  if (!names.length) {
    return h("p", { class: "empty" },
      "No VLM results for this image (no model configured when it was analysed).");
  }
  return h("div", { class: "vlm" }, names.map((name) => {
    const entry = vlm[name] || {};
    const status = entry.status || "unknown";
    const head = h("p", {}, h("strong", {}, name), " ",
      h("span", { class: `badge vlm-${status.replace(/[^a-z]/g, "")}` }, status),
      entry.model ? h("span", { class: "small muted" }, ` ${entry.model}`) : null);
    const reason = entry.reason || entry.error
      ? h("p", { class: status === "error" ? "error-text" : "muted" },
        entry.reason || entry.error) : null;
    return h("div", { class: "vlm-entry" }, head, reason, vlmResult(entry.result));
  }));
}

function vlmResult(result) {
  if (!result || typeof result !== "object") return null;
  if (result.patterns && typeof result.patterns === "object") {
    return h("div", { class: "table-wrap" }, h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["Pattern", "Presence", "Confidence", "Evidence"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, Object.entries(result.patterns).map(([name, p]) => h("tr", {},
        h("th", { scope: "row" }, name),
        h("td", {}, ratingBar(p && p.presence)),
        h("td", {}, ratingBar(p && p.confidence)),
        h("td", { class: "small" }, (p && p.evidence) || ""))))));
  }
  return h("table", { class: "grid" }, h("tbody", {},
    Object.entries(result).map(([key, value]) => h("tr", {},
      h("th", { scope: "row" }, key),
      h("td", {}, typeof value === "number" && value >= 0 && value <= 1
        ? ratingBar(value)
        : typeof value === "object" ? JSON.stringify(value) : String(value))))));
}

function ratingBar(value) {
  if (typeof value !== "number") return h("span", { class: "muted" }, "–");
  return h("span", { class: "rating" },
    h("meter", { min: 0, max: 1, value }), ` ${value.toFixed(2)}`);
}

// ---------------------------------------------------------------- histograms

let histogramData = null;

async function loadHistograms(jobId) {
  // Every completed item's image, a few at a time, then one small SVG
  // histogram per metric, so an image far from the others stands out.
  const ids = [];
  let offset = 0;
  let total = 1;
  try {
    while (offset < total && ids.length < HISTOGRAM_IMAGES) {
      const page = await getJson(
        `upload/jobs/${jobId}?items_offset=${offset}&items_limit=1000`,
        `Loading job #${jobId} failed`);
      total = page.items_total;
      offset += page.items.length;
      for (const item of page.items) {
        if (item.status === "COMPLETED" && item.image_id && !ids.includes(item.image_id)) {
          ids.push(item.image_id);
        }
      }
      if (!page.items.length) break;
    }
  } catch (error) {
    showError("job-error", error);
    return;
  }
  const chosen = ids.slice(0, HISTOGRAM_IMAGES);
  const images = [];
  const errors = [];
  let next = 0;
  async function worker() {
    while (next < chosen.length) {
      const id = chosen[next++];
      try {
        images.push(await imageDetail(id));
      } catch (error) {
        errors.push(error.message);
      }
    }
  }
  await Promise.all([1, 2, 3, 4].map(worker));
  if (jobId !== openJobId) return;
  if (errors.length) showError("job-error", new Error(errors[0]));
  renderHistograms(images, ids.length >= HISTOGRAM_IMAGES);
}

function breakable(text) {
  // Text such as color.chroma_mean or DarkestHour.jpg may break after its
  // dots, underscores and hyphens rather than inside a word; each piece is its
  // own text node.
  return text.split(/(?<=[._-])/)
    .flatMap((piece, i) => (i ? [h("wbr"), piece] : [piece]));
}

function metricName(key) {
  return h("span", { class: "metric-name", title: key }, breakable(key));
}

function renderHistograms(images, capped) {
  const analysed = images.filter((image) => image.analysis);
  const box = $("histograms");
  box.hidden = false;
  $("metric-values").hidden = true;
  $("histogram-grid").hidden = false;
  if (!analysed.length) {
    $("histograms-note").textContent = "No analysed image in this job, so no "
      + "histograms.";
    $("histogram-grid").replaceChildren();
    return;
  }
  const keys = [...new Set(analysed.flatMap((image) => Object.keys(numericValues(image))))]
    .sort((a, b) => a.startsWith("vlm.") - b.startsWith("vlm.") || a.localeCompare(b));
  histogramData = { analysed, keys };
  if (analysed.length < HISTOGRAM_MIN_IMAGES) {
    // One or two values make flat histograms; they are listed instead.
    $("histograms-note").textContent = `${analysed.length} analysed image`
      + `${analysed.length === 1 ? "" : "s"}: histograms need at least `
      + `${HISTOGRAM_MIN_IMAGES}, so the values are listed.`;
    $("histogram-grid").replaceChildren();
    $("histogram-grid").hidden = true;
    $("metric-values").replaceChildren(metricValues(keys, analysed));
    $("metric-values").hidden = false;
    return;
  }
  $("histograms-note").textContent = `${analysed.length} image`
    + `${analysed.length === 1 ? "" : "s"}${capped ? ` (the first ${HISTOGRAM_IMAGES})` : ""}`
    + ". Red bars hold outliers (beyond 1.5 × the interquartile range); the opened "
    + "image's bar is outlined.";
  $("histogram-grid").replaceChildren(...keys.map((key) => histogram(key, analysed)));
  const current = analysed.find((image) => image.id === currentItemImage);
  markHistograms(current || null);
}

function metricValues(keys, images) {
  return h("table", { class: "grid values" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Metric"),
      images.map((image) => h("th", { scope: "col", class: "num" },
        h("span", { class: "filename" }, image.filename))))),
    h("tbody", {}, keys.map((key) => h("tr", { "data-metric": key },
      h("th", { scope: "row" }, metricName(key)),
      images.map((image) => h("td", { class: "num" },
        formatNumber(numericValues(image)[key] ?? null)))))));
}

function numericValues(image) {
  // The metrics, then the VLM's numeric ratings as vlm.<analyzer>.<field>.
  if (!image.numeric) {
    const values = { ...image.analysis.metrics };
    for (const [name, entry] of Object.entries(image.analysis.vlm || {})) {
      const result = entry && entry.status === "ok" ? entry.result || {} : {};
      for (const [field, value] of Object.entries(result)) {
        if (typeof value === "number") values[`vlm.${name}.${field}`] = value;
      }
    }
    image.numeric = values;
  }
  return image.numeric;
}

function quantile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function histogram(key, images) {
  const values = images.map((image) => ({
    image, value: numericValues(image)[key],
  })).filter((v) => typeof v.value === "number" && Number.isFinite(v.value));
  const figure = h("figure", { class: "histogram", "data-metric": key });
  const caption = h("figcaption", {}, metricName(key));
  if (!values.length) {
    figure.append(caption, h("p", { class: "muted small" }, "no values"));
    return figure;
  }
  const sorted = values.map((v) => v.value).sort((a, b) => a - b);
  const min = sorted[0];
  const max = sorted[sorted.length - 1];
  const bins = max > min ? Math.min(20, Math.ceil(Math.sqrt(values.length)) + 2) : 1;
  const width = max > min ? (max - min) / bins : 1;
  const binOf = (value) => Math.min(bins - 1, Math.floor((value - min) / width));
  const q1 = quantile(sorted, 0.25);
  const q3 = quantile(sorted, 0.75);
  const fence = 1.5 * (q3 - q1);
  const isOutlier = (v) => values.length >= 4 && (v < q1 - fence || v > q3 + fence);

  const counts = new Array(bins).fill(0);
  const members = Array.from({ length: bins }, () => []);
  const outlierBins = new Set();
  for (const v of values) {
    const b = binOf(v.value);
    counts[b] += 1;
    members[b].push(v.image.filename);
    if (isOutlier(v.value)) outlierBins.add(b);
  }
  const W = 180;
  const H = 60;
  const top = Math.max(...counts);
  const barW = W / bins;
  const svg = h("svg", { viewBox: `0 0 ${W} ${H + 2}`, width: W, height: H + 2,
    role: "img", "aria-label": `histogram of ${key}: ${values.length} values from `
      + `${formatNumber(min)} to ${formatNumber(max)}` });
  counts.forEach((count, b) => {
    const barH = count ? Math.max(2, (count / top) * H) : 0;
    const lo = min + b * width;
    const rect = h("rect", {
      x: (b * barW + 0.5).toFixed(2), y: (H - barH).toFixed(2),
      width: Math.max(1, barW - 1).toFixed(2), height: barH.toFixed(2),
      class: outlierBins.has(b) ? "bar outlier" : "bar", "data-bin": b,
    }, h("title", {}, `${formatNumber(lo)} to ${formatNumber(lo + width)}: `
      + `${count} image${count === 1 ? "" : "s"}`
      + (count ? ` (${members[b].slice(0, 5).join(", ")}`
        + `${members[b].length > 5 ? ", …" : ""})` : "")));
    svg.append(rect);
  });
  svg.append(h("line", { x1: 0, x2: W, y1: H + 1, y2: H + 1, class: "axis" }));
  figure.histogram = { binOf, min, max };
  const outliers = values.filter((v) => isOutlier(v.value));
  figure.append(...[caption, svg,
    h("div", { class: "range small muted" },
      h("span", {}, formatNumber(min)), h("span", {}, formatNumber(max))),
    outliers.length ? h("p", { class: "small outlier-text" }, "outlier: ",
      outliers.slice(0, 3).map((v) => v.image.filename).join(", "),
      outliers.length > 3 ? ` and ${outliers.length - 3} more` : "") : null]
    .filter(Boolean));
  return figure;
}

function markHistograms(image) {
  for (const figure of $("histogram-grid").children) {
    for (const rect of figure.querySelectorAll("rect")) rect.classList.remove("current");
    if (!image || !image.analysis || !figure.histogram) continue;
    const value = numericValues(image)[figure.dataset.metric];
    if (typeof value !== "number") continue;
    const bin = figure.histogram.binOf(value);
    figure.querySelector(`rect[data-bin="${bin}"]`)?.classList.add("current");
  }
}

// --------------------------------------------------------------------- costs

async function loadCosts() {
  const body = $("costs-body");
  let costs;
  try {
    costs = await getJson("costs", "Loading the cost ledger failed");
  } catch (error) {
    if (error.status === 404) {
      body.replaceChildren(h("p", { class: "empty" }, "The cost ledger is not "
        + "available on this server (it has no /api/v1/admin/costs endpoint)."));
    } else {
      body.replaceChildren(h("p", { class: "error-text", role: "alert" },
        error.message));
    }
    return;
  }
  body.replaceChildren(...costSections(costs).filter(Boolean));
}

function costSections(c) {
  const budget = c.budget_usd;
  const summary = h("dl", { class: "facts costs-summary" },
    h("dt", {}, "Budget"), h("dd", {}, budget === null || budget === undefined
      ? "no cap set" : formatUsd(budget)),
    h("dt", {}, "Spent"), h("dd", {}, formatUsd(c.spent_usd)),
    h("dt", {}, "Reserved"), h("dd", {}, formatUsd(c.reserved_usd || 0),
      h("span", { class: "small muted" }, c.in_flight_calls
        ? ` (${c.in_flight_calls} call${c.in_flight_calls === 1 ? "" : "s"} in `
          + "flight, in any process)"
        : " (calls in flight)")),
    h("dt", {}, "Left"), h("dd", {}, budget === null || budget === undefined
      ? "–" : formatUsd(c.remaining_usd)),
    budget ? [h("dt", {}, "Used"), h("dd", {},
      h("meter", { min: 0, max: budget, value: c.spent_usd || 0,
        high: budget * 0.8, optimum: 0, "aria-label": "share of the budget spent" }),
      ` ${Math.round((100 * (c.spent_usd || 0)) / budget)}%`)] : null);
  const unpriced = c.unpriced_calls
    ? h("p", { class: "muted small" }, `${c.unpriced_calls} call`
      + `${c.unpriced_calls === 1 ? " has" : "s have"} no known cost (no known `
      + "price, no usage reported, or interrupted) and count as unpriced, not "
      + "as free.") : null;
  const recent = c.recent || [];
  return [
    summary, unpriced,
    h("h3", {}, "By day"),
    costTable(c.by_day, ["day", "calls", "input_tokens", "output_tokens", "cost_usd"]),
    h("h3", {}, "By model"),
    costTable(c.by_model, ["provider", "model", "calls", "input_tokens",
      "output_tokens", "cost_usd"]),
    h("h3", {}, "By analyzer"),
    costTable(c.by_analyzer, ["tool", "calls", "input_tokens", "output_tokens",
      "cost_usd"]),
    h("h3", {}, "Recent calls"),
    recent.length ? recentCalls(recent)
      : h("p", { class: "empty" }, "No model calls yet."),
  ];
}

function columnLabel(col) {
  return col.replace(/_usd$/, " (USD)").replaceAll("_", " ");
}

function costTable(rows, columns) {
  // At phone width each row becomes a card of labelled lines.
  if (!rows || !rows.length) return h("p", { class: "empty" }, "No calls yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: "grid cards costs" },
    h("thead", {}, h("tr", {}, columns.map((col) => h("th", {
      scope: "col", class: col === "cost_usd" || typeof rows[0][col] === "number"
        ? "num" : null,
    }, columnLabel(col))))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((col) => h("td", {
      class: typeof row[col] === "number" || col === "cost_usd" ? "num" : null,
      "data-label": columnLabel(col),
    }, col === "cost_usd" ? formatUsd(row[col]) : formatNumber(row[col] ?? null))))))));
}

function pair(first, second, separator) {
  // Two facts in one cell: side by side where the table is wide, one above
  // the other where it is narrow (see .pair in the stylesheet).
  return h("span", { class: "pair" }, h("span", { class: "part" }, first),
    h("span", { class: "sep" }, separator), h("span", { class: "part" }, second));
}

function recentCalls(recent) {
  // Eight facts per call in six columns, so the table fits beside an open job.
  const columns = [["when", "When"], ["call", "Analyzer · model"],
    ["tokens", "Tokens in / out"], ["cost", "Cost · latency"], ["for", "For"],
    ["outcome", "Outcome"]];
  const cell = (col, ...content) => h("td", {
    class: `col-${col}`, "data-label": columns.find(([c]) => c === col)[1],
  }, ...content);
  // A call in flight has no tokens, cost or outcome yet: it says so, rather
  // than look unpriced; an interrupted one shows its note as any error does.
  const inFlight = (r) => r.outcome === "in_flight";
  return h("div", { class: "table-wrap fitted" }, h("table", {
    id: "recent-calls", class: "grid cards costs",
  },
  h("thead", {}, h("tr", {}, columns.map(([col, label]) => h("th", {
    scope: "col", class: `col-${col}`,
  }, label)))),
  h("tbody", {}, recent.map((r) => h("tr", {},
    cell("when", timeCell(r.created_at)),
    cell("call", pair(r.tool, r.model || "–", " · ")),
    cell("tokens", inFlight(r) ? "–" : pair(`${formatNumber(r.input_tokens ?? "?")} in`,
      `${formatNumber(r.output_tokens ?? "?")} out`, " / ")),
    cell("cost", pair(inFlight(r) ? "not known yet" : formatUsd(r.cost_usd),
      r.latency_ms === null || r.latency_ms === undefined
        ? "–" : `${Math.round(r.latency_ms)} ms`, " · ")),
    cell("for", r.image_id || r.job_id ? pair(r.image_id ? `image ${r.image_id}` : "",
      r.job_id ? h("button", { type: "button", class: "link",
        onclick: () => openJob(r.job_id) }, `job ${r.job_id}`) : "",
      r.image_id && r.job_id ? ", " : "") : h("span", { class: "muted" }, "–")),
    cell("outcome", inFlight(r) ? "in flight" : breakable(r.outcome), r.error ? [": ",
      h("span", { class: "error-text" }, r.error)] : null))))));
}

// ---------------------------------------------------------------------- wiring

function wire() {
  setUpDropzone();
  $("jobs-refresh").addEventListener("click", () => loadJobs().catch(() => {}));
  $("costs-refresh").addEventListener("click", () => loadCosts());
  $("job-close").addEventListener("click", closeJob);
  $("job-cancel").addEventListener("click", () => operateJob("cancel"));
  $("job-retry").addEventListener("click", () => operateJob("retry"));
  for (const format of ["csv", "parquet"]) {
    $(`job-export-${format}`).addEventListener("click", () => exportJob(format));
  }
  $("sign-out").addEventListener("click", signOut);
  $("items-prev").addEventListener("click", () => {
    itemsOffset = Math.max(0, itemsOffset - ITEMS_PAGE);
    loadJob();
  });
  $("items-next").addEventListener("click", () => {
    itemsOffset += ITEMS_PAGE;
    loadJob();
  });
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    start();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("job").hidden) {
      closeJob();
      $("jobs-refresh").focus();
    }
  });
  window.addEventListener("unhandledrejection", (event) => {
    notice(`Unexpected error: ${event.reason && event.reason.message
      ? event.reason.message : event.reason}`);
  });
}

wire();
start();
