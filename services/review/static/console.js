// ModStack review console: keyboard, actions through the JSON API, the wellness blur.
// Loaded from /static (the CSP allows no inline script). Every state-changing request sends
// the session's CSRF token (meta csrf-token) in X-CSRF-Token, htmx's requests included.
(function () {
  "use strict";

  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.getAttribute("content") : "";

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrf;
  });

  function flash(text, kind) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.className = "flash " + (kind || "");
  }

  async function api(method, path, body) {
    const headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { ok: response.ok, status: response.status, data: data };
  }

  function detail(result) {
    const d = result.data && result.data.detail;
    if (typeof d === "string") return d;
    return "HTTP " + result.status;
  }

  // -- the wellness blur -------------------------------------------------------------------
  function toggleReveal() {
    const body = document.getElementById("body");
    if (body) body.classList.toggle("blurred");
  }

  function toggleHelp(force) {
    const help = document.getElementById("help");
    if (help) help.classList.toggle("hidden", force === undefined ? undefined : !force);
  }

  // -- the queue page ----------------------------------------------------------------------
  let selected = -1;

  function rows() {
    return Array.from(document.querySelectorAll("#rows tr.row"));
  }

  function select(index) {
    const all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row, i) { row.classList.toggle("selected", i === selected); });
    all[selected].scrollIntoView({ block: "nearest" });
  }

  function openSelected() {
    const all = rows();
    if (selected >= 0 && all[selected]) window.location.assign(all[selected].dataset.href);
  }

  document.addEventListener("htmx:afterSwap", function () {
    if (selected >= 0) select(selected);
  });

  // -- the item page -----------------------------------------------------------------------
  const item = document.getElementById("item");
  const itemId = item ? item.dataset.itemId : null;
  let holder = item ? item.dataset.holder : "";
  let busy = false;

  function showClaim(data) {
    holder = data.claimed_by || "";
    const status = document.getElementById("claim-status");
    if (status) status.textContent = holder ? "claimed by " + holder + " until " + data.claim_expires_at : "unclaimed";
  }

  async function claim() {
    const result = await api("POST", "/v1/items/" + itemId + "/claim");
    if (result.ok) {
      showClaim(result.data);
      flash("Claimed: it is yours until " + result.data.claim_expires_at, "done");
    } else {
      flash(detail(result), "error");
    }
    return result.ok;
  }

  async function release() {
    const result = await api("POST", "/v1/items/" + itemId + "/release");
    if (result.ok) { showClaim(result.data); flash("Released", "done"); } else { flash(detail(result), "error"); }
  }

  async function decide(decision) {
    if (busy || !itemId) return;
    busy = true;
    try {
      if (!(await claim())) return;  // claiming again renews a claim we hold
      const wave = document.getElementById("wave");
      const body = { decision: decision, wave: Boolean(wave && wave.checked && (decision === "harm" || decision === "ok")) };
      const result = await api("POST", "/v1/items/" + itemId + "/decision", body);
      if (!result.ok) { flash(detail(result), "error"); return; }
      const n = result.data.decided.length;
      flash(decision + (result.data.label ? " (" + result.data.label + ")" : "") + ": " + n + " item" + (n === 1 ? "" : "s"), "done");
      const next = result.data.next_item_id;
      window.location.assign(next ? "/items/" + next : "/queue");
    } finally {
      busy = false;
    }
  }

  function toggleWave() {
    const wave = document.getElementById("wave");
    if (wave) wave.checked = !wave.checked;
  }

  // -- clicks and keys ---------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    const target = event.target.closest("[data-action], [data-decision], tr.row");
    if (!target) return;
    if (target.dataset.decision) { decide(target.dataset.decision); return; }
    const action = target.dataset.action;
    if (action === "reveal") toggleReveal();
    else if (action === "help") toggleHelp();
    else if (action === "claim") claim();
    else if (action === "release") release();
    else if (target.matches("tr.row") && !event.target.closest("a")) window.location.assign(target.dataset.href);
  });

  const itemKeys = { c: claim, u: release, w: toggleWave, r: toggleReveal,
    h: function () { decide("harm"); }, o: function () { decide("ok"); },
    e: function () { decide("escalate"); }, s: function () { decide("skip"); } };
  const queueKeys = { j: function () { select(selected + 1); }, k: function () { select(selected - 1); },
    Enter: openSelected, o: openSelected };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) return;
    if (event.key === "?") { toggleHelp(); return; }
    if (event.key === "Escape") { toggleHelp(false); return; }
    if (event.key === "q" && item) { window.location.assign("/queue"); return; }
    const keys = item ? itemKeys : (document.getElementById("rows") ? queueKeys : {});
    const handler = keys[event.key];
    if (handler) { event.preventDefault(); handler(); }
  });

})();
