// The review page: calls this app's own JSON API (tfsent.app.web), never the model server.
// Every user text goes into the page through textContent, never as HTML.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("app-config").textContent);
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const SHORT_REVIEW = 90; // characters of a review shown in the table
  const COLORS = { negative: "#d64545", positive: "#2f9e5b", neutral: "#7b8794" };
  const PALETTE = ["#2f5fd0", "#d9822b", "#8e44ad", "#16a2b8", "#c0392b", "#27ae60"];

  let healthy = null;
  let pollTimer = null;
  let labels = [];
  let lastBatch = null;

  const capitalize = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : s);
  const colorOf = (label) => COLORS[label.toLowerCase()] ||
    PALETTE[Math.max(0, labels.indexOf(label)) % PALETTE.length];
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  class ApiError extends Error {
    constructor(message, status, kind) {
      super(message);
      this.status = status;
      this.kind = kind;
    }
    // 5xx and no answer at all: the model (or this page's backend) is away, not the input.
    get serverSide() { return this.status === 0 || this.status >= 500; }
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new ApiError("This page's backend (python -m tfsent.app) is not answering; " +
        "the page retries by itself.", 0, "backend");
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const message = (body && body.error) || `The page's backend answered HTTP ${response.status}.`;
      throw new ApiError(message, response.status, body && body.kind);
    }
    return body;
  }

  // ---- health: the banner, the status chip, and polling until the server is back ----------

  function setHealthy(ok, message) {
    healthy = ok;
    const status = $("status");
    status.className = "status " + (ok ? "status-ok" : "status-down");
    status.textContent = ok ? "Model ready" : "Model unreachable";
    const banner = $("error-banner");
    banner.hidden = ok;
    if (!ok) banner.textContent = message;
  }

  function schedule(ms) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(refreshInfo, ms);
  }

  async function refreshInfo() {
    try {
      const info = await api("api/info");
      labels = info.labels;
      $("info-model").textContent = info.model_name;
      $("info-version").textContent = info.version === null ? "–" : String(info.version);
      $("info-labels").textContent = info.labels.join(", ");
      $("info-server").textContent = info.server +
        (info.protocol === "in-process" ? "" : ` (${info.protocol === "grpc" ? "gRPC" : "REST"})`);
      setHealthy(true);
    } catch (err) {
      setHealthy(false, err.message);
    }
    schedule(healthy ? config.poll_ok_ms : config.poll_error_ms);
  }

  // A failed call either blames the input (shown next to it) or the server (the banner).
  function report(err, fieldError) {
    if (err instanceof ApiError && err.serverSide) {
      setHealthy(false, err.message);
      schedule(config.poll_error_ms);
    } else {
      fieldError.textContent = err.message;
      fieldError.hidden = false;
    }
  }

  async function busy(button, label, work) {
    const text = button.textContent;
    button.disabled = true;
    button.textContent = label;
    try { await work(); } finally {
      button.disabled = false;
      button.textContent = text;
    }
  }

  // ---- single review ----------------------------------------------------------------------

  function renderBars(container, probabilities) {
    container.replaceChildren();
    for (const [label, p] of Object.entries(probabilities)) {
      const row = el("div", "bar-row");
      row.dataset.label = label;
      const track = el("div", "bar-track");
      const fill = el("div", "bar-fill");
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      fill.style.background = colorOf(label);
      track.append(fill);
      row.append(el("span", "bar-name", capitalize(label)), track,
        el("span", "bar-value", p.toFixed(2)));
      container.append(row);
    }
  }

  async function predictOne() {
    const error = $("single-error");
    error.hidden = true;
    const text = $("review").value;
    if (!text.trim()) {
      error.textContent = "The review is empty: type a review first.";
      error.hidden = false;
      return;
    }
    await busy($("predict"), "Predicting…", async () => {
      try {
        const p = await api("api/predict", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ text }),
        });
        const label = $("single-label");
        label.textContent = capitalize(p.label);
        label.style.color = colorOf(p.label);
        const result = $("single-result");
        result.dataset.label = p.label;
        result.dataset.confidence = String(p.confidence);
        $("single-confidence").textContent = p.confidence.toFixed(2);
        renderBars($("single-bars"), p.probabilities);
        result.hidden = false;
        if (healthy === false) refreshInfo();
      } catch (err) {
        report(err, error);
      }
    });
  }

  // ---- batch ------------------------------------------------------------------------------

  function shorten(text) {
    const flat = text.replace(/\s+/g, " ").trim();
    return flat.length > SHORT_REVIEW ? flat.slice(0, SHORT_REVIEW - 1).trimEnd() + "…" : flat;
  }

  function renderChart(counts) {
    const entries = Object.entries(counts);
    const max = Math.max(1, ...entries.map(([, n]) => n));
    const row = 30, nameWidth = 110, barWidth = 320, width = nameWidth + barWidth + 60;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", entries.length * row);
    svg.setAttribute("viewBox", `0 0 ${width} ${entries.length * row}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Label counts: " +
      entries.map(([label, n]) => `${label} ${n}`).join(", "));
    entries.forEach(([label, n], i) => {
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", "chart-row");
      g.dataset.label = label;
      g.dataset.count = String(n);
      const y = i * row;
      const name = document.createElementNS(SVG, "text");
      name.setAttribute("x", 0);
      name.setAttribute("y", y + 19);
      name.textContent = capitalize(label);
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", nameWidth);
      bar.setAttribute("y", y + 5);
      bar.setAttribute("height", 20);
      bar.setAttribute("rx", 4);
      bar.setAttribute("width", Math.max(n > 0 ? 2 : 0, (barWidth * n) / max));
      bar.setAttribute("fill", colorOf(label));
      const count = document.createElementNS(SVG, "text");
      count.setAttribute("class", "chart-count");
      count.setAttribute("x", nameWidth + (barWidth * n) / max + 8);
      count.setAttribute("y", y + 19);
      count.textContent = String(n);
      g.append(name, bar, count);
      svg.append(g);
    });
    $("batch-chart").replaceChildren(svg);
  }

  function renderBatch(reply) {
    lastBatch = reply;
    renderChart(reply.counts);
    const n = reply.results.length;
    $("batch-total").textContent = `(${n} review${n === 1 ? "" : "s"})`;
    const body = $("batch-table").tBodies[0];
    const rows = reply.results.map((r, i) => {
      const tr = el("tr");
      tr.dataset.label = r.label;
      const review = el("td", "review", shorten(r.review));
      review.title = r.review;
      const labelCell = el("td", "label");
      const pill = el("span", "pill", capitalize(r.label));
      pill.style.background = colorOf(r.label);
      labelCell.append(pill);
      tr.append(el("td", "num", String(i + 1)), review, labelCell,
        el("td", "num confidence", r.confidence.toFixed(2)));
      return tr;
    });
    body.replaceChildren(...rows);
    $("batch-results").hidden = false;
    if (healthy === false) refreshInfo();
  }

  async function runBatch(request) {
    const error = $("batch-error");
    error.hidden = true;
    try {
      renderBatch(await api(request.path, request.options));
    } catch (err) {
      report(err, error);
    }
  }

  function batchError(message) {
    $("batch-error").textContent = message;
    $("batch-error").hidden = false;
  }

  async function batchFromLines() {
    const reviews = $("batch-text").value.split(/\r?\n/).filter((line) => line.trim());
    if (!reviews.length) return batchError("No reviews: paste one review per line.");
    if (reviews.length > config.max_reviews) {
      return batchError(`${reviews.length} reviews, more than the ${config.max_reviews} ` +
        "a batch may hold; split them into smaller batches.");
    }
    await busy($("batch-run"), "Predicting…", () => runBatch({
      path: "api/batch",
      options: {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ reviews }),
      },
    }));
  }

  async function batchFromFile() {
    const input = $("batch-file");
    const file = input.files[0];
    if (!file) return;
    $("batch-error").hidden = true;
    if (file.size > config.max_body_bytes) {
      input.value = "";
      return batchError(`${file.name} is larger than ` +
        `${(config.max_body_bytes / 1048576).toFixed(0)} MB; split it into smaller files.`);
    }
    input.disabled = true;
    try {
      await runBatch({
        path: "api/batch/csv",
        options: { method: "POST", headers: { "Content-Type": "text/csv" }, body: file },
      });
    } finally {
      input.disabled = false;
      input.value = ""; // choosing the same file again must fire "change" again
    }
  }

  // RFC 4180: quote every field that needs it, double the quotes inside.
  const csvField = (value) => {
    const s = String(value);
    return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
  };

  function downloadCsv() {
    if (!lastBatch) return;
    const header = ["review", "label", "confidence", ...lastBatch.labels.map((l) => `p_${l}`)];
    const lines = [header, ...lastBatch.results.map((r) => [
      r.review, r.label, r.confidence, ...lastBatch.labels.map((l) => r.probabilities[l]),
    ])].map((fields) => fields.map(csvField).join(","));
    // The byte-order mark makes spreadsheet programs read the file as UTF-8.
    const blob = new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = "tfsent-predictions.csv";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  // ---- wiring -----------------------------------------------------------------------------

  $("predict").addEventListener("click", predictOne);
  $("review").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) predictOne();
  });
  $("batch-run").addEventListener("click", batchFromLines);
  $("batch-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) batchFromLines();
  });
  $("batch-file").addEventListener("change", batchFromFile);
  $("download-csv").addEventListener("click", downloadCsv);
  refreshInfo();
})();
