// restormer serve: the page. Plain JavaScript, talking only to this server's /api.
//
// Each photo becomes one job: POST /api/jobs, then GET /api/jobs/{id} a few times a second
// for the tile progress, then the input and the result as blobs (fetched with the token,
// which <img src> could not send) for the before/after view and the download.
"use strict";

const POLL_MS = 300;
const TOKEN_KEY = "restormer-token";
const MODEL_KEY = "restormer-model";

const $ = (selector, root = document) => root.querySelector(selector);
let catalog = null; // GET /api/models

// ------------------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, "cannot reach the server (is `restormer serve` still running?)");
  }
  if (response.status === 401) showTokenPanel("The access token is missing or wrong.");
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.detail) message = String(body.detail);
    } catch (err) { /* not JSON: keep the status line */ }
    const retry = Number(response.headers.get("Retry-After")) || 0;
    throw new ApiError(response.status, message, retry);
  }
  return response;
}

const apiJson = async (path, options) => (await api(path, options)).json();

// ------------------------------------------------------------------------------ start-up

function showTokenPanel(reason) {
  const panel = $("#token-panel");
  panel.hidden = false;
  $("#setup").hidden = true;
  $("#server-status").textContent = reason;
  $("#token").focus();
}

async function start() {
  $("#token-panel").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token-panel").hidden = true;
    start();
  });
  try {
    catalog = await apiJson("/api/models");
  } catch (err) {
    if (err.status !== 401) $("#server-status").textContent = err.message;
    return;
  }
  $("#setup").hidden = false;
  fillModels();
  $("#tile").value = catalog.defaults.tile;
  const mib = catalog.limits.max_upload_bytes / 2 ** 20;
  $("#limits").textContent =
    `PNG, JPEG, TIFF, WebP or BMP; 8 or 16 bit; up to ${mib.toFixed(mib < 10 ? 1 : 0)} MiB ` +
    `and ${(catalog.limits.max_pixels / 1e6).toFixed(0)} MP per job. ` +
    "Results are PNG in the photo's bit depth.";
  wireInputs();
  refreshHealth();
  setInterval(refreshHealth, 2000);
}

async function refreshHealth() {
  try {
    const h = await apiJson("/healthz");
    $("#server-status").textContent =
      `${h.running} running, ${h.queued} waiting (of ${h.max_queue}), ${h.workers} worker` +
      (h.workers === 1 ? "" : "s");
  } catch (err) {
    $("#server-status").textContent = err.message;
  }
}

function fillModels() {
  const select = $("#model");
  select.replaceChildren();
  const groups = { task: "Tasks (shipped models)", weights: "Weights files of this server" };
  for (const [kind, label] of Object.entries(groups)) {
    const models = catalog.models.filter((m) => m.kind === kind);
    if (!models.length) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    for (const m of models) {
      const option = new Option(m.available ? m.name : `${m.name} (not installed)`, m.name);
      option.disabled = !m.available;
      option.title = m.description;
      group.append(option);
    }
    select.append(group);
  }
  const usable = catalog.models.filter((m) => m.available);
  const saved = localStorage.getItem(MODEL_KEY);
  const pick = usable.find((m) => m.name === saved) || usable[0];
  if (pick) select.value = pick.name;
  else showMessage("No model is available: start the server with --weights NAME=FILE.");
  modelChanged();
}

function currentModel() {
  return catalog.models.find((m) => m.name === $("#model").value && m.available) || null;
}

function modelChanged() {
  const model = currentModel();
  $("#model-description").textContent = model ? model.description : "";
  const dual = Boolean(model && model.dual_pixel);
  $("#drop").hidden = dual;
  $("#dual").hidden = !dual;
  if (model) localStorage.setItem(MODEL_KEY, model.name);
}

function showMessage(text) {
  $("#message").textContent = text || "";
}

// ------------------------------------------------------------------------------ input

function wireInputs() {
  $("#model").addEventListener("change", modelChanged);
  $("#files").addEventListener("change", (event) => {
    addPhotos([...event.target.files]);
    event.target.value = "";
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addPhotos([...event.dataTransfer.files]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("#files").click();
  });
  const pairReady = () => {
    $("#dual-go").disabled = !($("#left").files.length && $("#right").files.length);
  };
  $("#left").addEventListener("change", pairReady);
  $("#right").addEventListener("change", pairReady);
  $("#dual-go").addEventListener("click", () => {
    submit([$("#left").files[0], $("#right").files[0]]);
    $("#left").value = "";
    $("#right").value = "";
    pairReady();
  });
}

function addPhotos(files) {
  showMessage("");
  const model = currentModel();
  if (!model) {
    showMessage("Choose a model first.");
    return;
  }
  for (const file of files) submit([file]);
}

// ------------------------------------------------------------------------------ jobs

class JobCard {
  constructor(files, model) {
    this.files = files;
    this.model = model;
    this.urls = [];
    this.id = null;
    this.finished = false;
    this.el = $("#job-template").content.firstElementChild.cloneNode(true);
    $(".name", this.el).textContent = files.map((f) => f.name).join(" + ");
    $(".name", this.el).title = `${model.name}: ${files.map((f) => f.name).join(" + ")}`;
    $(".cancel", this.el).addEventListener("click", () => this.cancel());
    $(".remove", this.el).addEventListener("click", () => this.remove());
    $("#jobs").prepend(this.el);
    this.setState("uploading", "sending the photo to the server");
  }

  setState(state, phase) {
    this.el.className = `job ${state}`;
    $(".state", this.el).textContent = state;
    $(".phase", this.el).textContent = phase || "";
  }

  setProgress(fraction) {
    const percent = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    $(".bar", this.el).style.width = `${percent}%`;
    $(".progress", this.el).setAttribute("aria-valuenow", String(percent));
  }

  fail(state, message) {
    this.finished = true;
    this.setState(state, "");
    $(".error", this.el).textContent = message;
    this.setProgress(1);
    $(".cancel", this.el).hidden = true;
    $(".remove", this.el).hidden = false;
  }

  async cancel() {
    $(".cancel", this.el).disabled = true;
    this.cancelled = true;
    if (!this.id) return; // not yet accepted: submit() stops at its next step
    try {
      const status = await apiJson(`/api/jobs/${this.id}`, { method: "DELETE" });
      this.setState(status.state, status.phase);
    } catch (err) {
      $(".error", this.el).textContent = err.message;
    }
  }

  async remove() {
    if (this.id && this.finished) {
      try {
        await api(`/api/jobs/${this.id}`, { method: "DELETE" });
      } catch (err) { /* already gone: fine */ }
    }
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.el.remove();
  }

  async blobUrl(path) {
    const url = URL.createObjectURL(await (await api(path)).blob());
    this.urls.push(url);
    return url;
  }

  async showResult(status) {
    this.finished = true;
    const [before, after] = await Promise.all([
      this.blobUrl(status.input_url),
      this.blobUrl(status.result_url),
    ]);
    const stage = $(".stage", this.el);
    const loaded = (img, src) => new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the browser cannot display this image"));
      img.src = src;
    });
    await Promise.all([loaded($(".before", stage), before), loaded($(".after", stage), after)]);
    const link = $(".download", this.el);
    link.href = after;
    link.download = status.download_name;
    $(".facts", this.el).textContent =
      `${status.width} × ${status.height}, ${status.bit_depth}-bit, ` +
      `${status.tiles_total} tile${status.tiles_total === 1 ? "" : "s"}` +
      `${status.ensemble ? ", ensemble" : ""} — restored in ${status.seconds.toFixed(1)} s`;
    wireComparison(this.el);
    $(".result", this.el).hidden = false;
    $(".cancel", this.el).hidden = true;
    $(".remove", this.el).hidden = false;
    this.setState("done", "");
  }
}

function wireComparison(card) {
  const stage = $(".stage", card);
  const slider = $(".slider", card);
  const setPos = (percent) => {
    const clamped = Math.max(0, Math.min(100, percent));
    stage.style.setProperty("--pos", `${clamped}%`);
    slider.value = String(clamped);
  };
  slider.addEventListener("input", () => setPos(Number(slider.value)));
  const follow = (event) => {
    const box = stage.getBoundingClientRect();
    setPos(((event.clientX - box.left) / box.width) * 100);
  };
  stage.addEventListener("pointerdown", (event) => {
    stage.setPointerCapture(event.pointerId);
    follow(event);
  });
  stage.addEventListener("pointermove", (event) => {
    if (stage.hasPointerCapture(event.pointerId)) follow(event);
  });
  const zoom = $(".zoom", card);
  zoom.addEventListener("click", () => {
    const actual = stage.classList.toggle("actual");
    zoom.textContent = actual ? "Fit to width" : "Zoom to 100%";
  });
  setPos(50);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function submit(files) {
  const model = currentModel();
  const card = new JobCard(files, model);
  const limit = catalog.limits.max_upload_bytes;
  const size = files.reduce((sum, f) => sum + f.size, 0);
  if (size > limit) {
    card.fail("failed", `too large: ${(size / 2 ** 20).toFixed(1)} MiB, the limit is ` +
      `${(limit / 2 ** 20).toFixed(1)} MiB per job`);
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("image", file, file.name);
  form.append("model", model.name);
  form.append("tile", $("#tile").value || "0");
  form.append("ensemble", $("#ensemble").checked ? "true" : "false");
  let status;
  for (;;) { // a full queue is no error: wait as the server asks, then try again
    if (card.cancelled) return card.fail("cancelled", "cancelled before upload");
    try {
      status = await apiJson("/api/jobs", { method: "POST", body: form });
      break;
    } catch (err) {
      if (err.status !== 429) return card.fail("failed", err.message);
      const wait = Math.max(err.retryAfter, 1);
      card.setState("waiting", `the server's queue is full; trying again in ${wait} s`);
      await sleep(wait * 1000);
    }
  }
  card.id = status.id;
  if (card.cancelled) await card.cancel();
  await follow(card);
}

async function follow(card) {
  for (;;) {
    let status;
    try {
      status = await apiJson(`/api/jobs/${card.id}`);
    } catch (err) {
      return card.fail("failed", err.message);
    }
    if (status.state === "queued") {
      const ahead = status.queue_position;
      card.setState("queued", ahead ? `${ahead} job${ahead === 1 ? "" : "s"} ahead` : "next");
      card.setProgress(0);
    } else if (status.state === "running") {
      const tiles = status.tiles_total
        ? ` — tile ${status.tiles_done} of ${status.tiles_total}` : "";
      card.setState("running", `${status.phase}${tiles}`);
      card.setProgress(status.progress);
    } else if (status.state === "done") {
      card.setProgress(1);
      try {
        await card.showResult(status);
      } catch (err) {
        card.fail("failed", err.message);
      }
      return;
    } else {
      return card.fail(status.state, status.error || status.state);
    }
    await sleep(POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", start);
