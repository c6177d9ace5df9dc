// The dashboard's memory: a strip of each target's recent runs (hover or click one for its cause), when its
// status last changed, whether it is flapping, and when the next scheduled run starts. Values from the API are
// untrusted and only ever set with textContent.
"use strict";

(function () {
  const cards = new Map(Array.from(document.querySelectorAll(".card"), (card) => [card.dataset.target, card]));
  if (cards.size === 0) return;
  const nextRun = document.getElementById("next-run");
  const POLL_MS = 5000;

  function field(root, name) {
    return root.querySelector(`[data-field="${name}"]`);
  }

  function describe(mark) {
    const when = new Date(mark.finished_at).toLocaleString();
    const where = mark.stage ? ` at ${mark.stage}` : "";
    return `${when}: ${mark.status}${where}${mark.cause ? ` (${mark.cause})` : ""}`;
  }

  function tick(card, mark) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `tick ${mark.status}`;
    button.title = describe(mark);
    button.setAttribute("role", "listitem");
    button.setAttribute("aria-label", describe(mark));
    button.addEventListener("click", () => {
      const detail = field(card, "strip-detail");
      detail.textContent = describe(mark);
      detail.hidden = false;
    });
    return button;
  }

  function render(doc) {
    for (const target of doc.targets) {
      const card = cards.get(target.name);
      if (!card) continue;
      const box = card.querySelector("[data-history]");
      box.hidden = target.runs.length === 0;
      field(card, "strip").replaceChildren(...target.runs.map((mark) => tick(card, mark)));
      let changed = target.changed_at ? `${target.status} since ${new Date(target.changed_at).toLocaleString()}` : "";
      if (target.failing_since) changed = `failing since ${new Date(target.failing_since).toLocaleString()}`;
      field(card, "changed").textContent = changed;
      field(card, "flapping").hidden = !target.flapping;
    }
    nextRun.hidden = !doc.next_run_at;
    if (doc.next_run_at) nextRun.textContent = `Next scheduled run ${new Date(doc.next_run_at).toLocaleString()}`;
  }

  let timer = null;

  async function refresh() {
    clearTimeout(timer);
    try {
      const response = await fetch("/api/history", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) render(await response.json());
    } catch (error) {
      // the results panel reports connection problems; the strips simply wait for the next poll
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  // app.js rewrites the verdict's time line when a run finishes: the strips follow at once
  const when = document.querySelector('#verdict [data-field="when"]');
  if (when) new MutationObserver(() => refresh()).observe(when, { childList: true, characterData: true, subtree: true });
  refresh();
})();
