// The dashboard: fills the server-rendered cards from /api/results and polls while a run is in flight.
// Every value from the API is untrusted (remote servers write causes and facts), so it is only ever set
// with textContent, never parsed as HTML.
"use strict";

(function () {
  const cards = new Map(Array.from(document.querySelectorAll(".card"), (card) => [card.dataset.target, card]));
  if (cards.size === 0) return;

  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const verdict = document.getElementById("verdict");
  const message = document.getElementById("message");
  const buttons = Array.from(document.querySelectorAll("#run-all, .run-one"));
  const POLL_MS = 1000;
  let timer = null;

  async function call(method, url) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf },
    });
    if (response.status === 401) {
      window.location.assign("/login");
      return null;
    }
    const body = await response.json().catch(() => null);
    if (response.status === 404 && url.startsWith("/api/results")) return null; // no run yet
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      throw new Error(detail);
    }
    return body;
  }

  function field(root, name) {
    return root.querySelector(`[data-field="${name}"]`);
  }

  function show(root, row, value) {
    const element = root.querySelector(`[data-row="${row}"]`);
    element.hidden = value === null || value === undefined || value === "";
    const target = field(root, row);
    if (target && !element.hidden) target.textContent = String(value);
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = cell === null || cell === undefined ? "" : String(cell);
      tr.appendChild(td);
    }
    return tr;
  }

  function seconds(ms) {
    return `${(ms / 1000).toFixed(2)} s`;
  }

  function renderCard(card, result, state) {
    card.dataset.status = result ? result.status : state;
    const badge = { running: "running…", unknown: "not run", skipped: "not in this run" };
    field(card, "status").textContent = result ? result.status : badge[state];
    show(card, "stage", result && result.stage);
    show(card, "cause", result && result.cause);
    show(card, "remediation", result && result.remediation);
    show(card, "duration", result && seconds(result.duration_ms));

    const steps = field(card, "steps");
    steps.replaceChildren(
      ...(result ? result.steps : []).map((s) => row([s.name, s.status, `${Math.round(s.duration_ms)} ms`, s.detail])),
    );
    card.querySelector('[data-row="steps"]').hidden = steps.children.length === 0;

    const facts = field(card, "facts");
    facts.replaceChildren(...Object.entries(result ? result.facts : {}).map(([key, value]) => row([key, value])));
    card.querySelector('[data-row="facts"]').hidden = facts.children.length === 0;
  }

  function renderVerdict(run) {
    let title;
    let state;
    let summary;
    let when = "";
    if (!run) {
      [title, state, summary] = ["No run yet", "unknown", "Press “Run all checks” to check every target."];
    } else {
      const c = run.counts;
      const done = c.total - c.pending;
      if (run.verdict === null) {
        [title, state] = [`Running… ${done} of ${c.total} checked`, "running"];
      } else {
        [title, state] = run.verdict === "ready" ? ["Ready", "ready"] : ["Not ready", "not_ready"];
      }
      summary = `${c.passed} passed, ${c.warning} warning, ${c.failed} failed of ${c.total}`;
      if (c.total < cards.size) summary += ` (this run checked only ${c.total} of ${cards.size} targets)`;
      if (run.strict) summary += "; strict mode: warnings count as failures";
      const started = new Date(run.started_at).toLocaleString();
      when = run.finished_at
        ? `Last run ${new Date(run.finished_at).toLocaleString()}, took ${seconds(run.duration_ms)}`
        : `Started ${started}`;
    }
    verdict.className = `verdict ${state}`;
    field(verdict, "title").textContent = title;
    field(verdict, "summary").textContent = summary;
    field(verdict, "when").textContent = when;
  }

  function render(run) {
    renderVerdict(run);
    const results = new Map((run ? run.results : []).map((r) => [r.name, r]));
    const pending = new Set(run ? run.pending : []);
    for (const [name, card] of cards) {
      const state = pending.has(name) ? "running" : run ? "skipped" : "unknown";
      renderCard(card, results.get(name), state);
    }
    const running = Boolean(run && run.verdict === null);
    for (const button of buttons) button.disabled = running;
    clearTimeout(timer);
    if (running) timer = setTimeout(refresh, POLL_MS);
  }

  function fail(error) {
    message.textContent = error.message;
    message.hidden = false;
    clearTimeout(timer);
    timer = setTimeout(refresh, POLL_MS * 5);
  }

  async function refresh() {
    try {
      render(await call("GET", "/api/results"));
      message.hidden = true;
    } catch (error) {
      fail(error);
    }
  }

  async function start(target) {
    const url = target ? `/api/runs?target=${encodeURIComponent(target)}` : "/api/runs";
    try {
      render(await call("POST", url));
      message.hidden = true;
    } catch (error) {
      fail(error);
    }
  }

  document.getElementById("run-all").addEventListener("click", () => start(null));
  for (const button of document.querySelectorAll(".run-one")) {
    button.addEventListener("click", () => start(button.dataset.run));
  }
  refresh();
})();
