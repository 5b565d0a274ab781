// Flotilla dashboard: reads the control plane's admin API and renders it; no build step.
//
// - The admin token is typed in by the operator, kept in this tab's sessionStorage only, and
//   sent as `Authorization: Bearer`; never put in a URL, never logged.
// - Every piece of data reaches the page through textContent / text nodes (the `el` helper),
//   never as HTML: names and messages come from workers, routers and the store.
// - Polls every POLL_MS while the tab is visible; stops while it is hidden and refreshes at once
//   when it comes back. One refresh at a time.
// - Panels fail separately: an API the control plane does not have (404) is an empty state,
//   other errors are shown in the panel; a refused token returns to the sign-in form.
"use strict";

(() => {
  const TOKEN_KEY = "flotilla.adminToken";
  const POLL_MS = 5000;
  const REQUEST_TIMEOUT_MS = 10000;
  const CONFIRM_MS = 4000;
  const EVENTS_SHOWN = 30;
  const ENDED_BURST_STATES = new Set(["completed", "failed"]);

  const $ = (id) => document.getElementById(id);
  const state = { pollTimer: null, inFlight: null, armed: new Map(), pools: [] };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // --- helpers -------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child)); // strings become text nodes
    }
    return node;
  }

  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  const text = (v) => (v === undefined || v === null || v === "" ? "–" : String(v));
  const num = (v) => (isNumber(v) ? String(Math.round(v * 10) / 10) : text(v));
  const usd = (v) => (isNumber(v) ? "$" + v.toFixed(v !== 0 && Math.abs(v) < 1 ? 3 : 2) : "–");
  const clock = (ts) => (isNumber(ts) ? new Date(ts * 1000).toLocaleTimeString() : "–");
  const when = (ts) => (isNumber(ts) ? new Date(ts * 1000).toLocaleString() : "–");

  function duration(seconds) {
    if (!isNumber(seconds)) return "–";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function setEmpty(panel, message) {
    const empty = panel.querySelector(".empty");
    empty.textContent = message || "";
    empty.hidden = !message;
  }

  function setPanelError(panel, message) {
    const box = panel.querySelector(".panel-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function banner(message, kind) {
    const box = $("banner");
    box.textContent = message || "";
    box.className = "banner " + (kind || "error");
    box.hidden = !message;
  }

  // --- the admin API ---------------------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(method, path, body) {
    const headers = { authorization: "Bearer " + token(), accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    init.signal = controller.signal;
    let response;
    let data = null;
    try {
      response = await fetch(path, init);
      data = await response.json().catch(() => null);
    } catch (err) {
      throw new ApiError(0, err && err.name === "AbortError"
        ? "the control plane did not answer in time" : "the control plane is unreachable");
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      const message = data && data.error && typeof data.error.message === "string"
        ? data.error.message : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  const list = (data) => (data && Array.isArray(data.data) ? data.data : []);

  // --- panels ----------------------------------------------------------------------------------

  function renderPools(result) {
    const panel = $("pools-panel");
    const body = $("pools-table").querySelector("tbody");
    body.replaceChildren();
    setPanelError(panel, "");
    if (result.missing) {
      state.pools = [];
      setEmpty(panel, "This control plane has no pools API.");
    } else if (result.error) {
      setPanelError(panel, "Pools: " + result.error.message);
      setEmpty(panel, "");
      return;
    } else {
      state.pools = list(result.value);
      for (const pool of state.pools) body.append(poolRow(pool));
      setEmpty(panel, state.pools.length ? "" : "No pools yet (PUT /v1/pools/{name}).");
    }
    $("pools-table").hidden = state.pools.length === 0;
    const names = state.pools.map(poolName);
    fillPoolSelect($("scale-pool"), names);
    fillPoolSelect($("burst-pool-input"), names);
    $("scale-form").hidden = names.length === 0;
    $("burst-form").hidden = names.length === 0;
  }

  const poolName = (pool) => String(pool.name ?? pool.id ?? "");

  function poolRow(pool) {
    const s = pool.status || {};
    const slo = pool.ttft_p95_slo_ms;
    const ttft = isNumber(s.ttft_p95_ms) ? `${Math.round(s.ttft_p95_ms)} ms` : "–";
    const overSlo = isNumber(s.ttft_p95_ms) && isNumber(slo) && s.ttft_p95_ms > slo;
    const decision = s.last_decision;
    const behind = isNumber(s.desired_replicas) && isNumber(s.ready_replicas)
      && s.ready_replicas < s.desired_replicas;
    return el("tr", { dataset: { pool: poolName(pool) } },
      el("td", { className: "mono" }, poolName(pool)),
      el("td", null, text(pool.model_id)),
      el("td", null, text(pool.provider)),
      el("td", null, `${text(pool.min_replicas)}–${text(pool.max_replicas)}`),
      el("td", { className: behind ? "warn replicas" : "replicas" },
        `${text(s.ready_replicas)} / ${text(s.desired_replicas)}`),
      el("td", null, text(s.starting_replicas)),
      el("td", null, num(s.queue_depth)),
      el("td", { className: overSlo ? "warn" : null, title: isNumber(slo) ? `SLO ${slo} ms` : null },
        ttft),
      el("td", null, usd(s.cost_per_hour_usd)),
      el("td", { className: "small" }, decision
        ? `${clock(decision.time)} ${text(decision.direction)}: ${text(decision.reason)}` : "–"));
  }

  function fillPoolSelect(select, names) {
    const current = Array.from(select.options, (o) => o.value);
    if (current.join("\n") === names.join("\n")) return; // keep the operator's choice
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
  }

  function renderCost(result) {
    if (result.missing || result.error) {
      $("cost-per-hour").textContent = "–";
      $("cost-total").textContent = "–";
      $("cost-since").textContent = result.missing ? "no cost API" : result.error.message;
      return;
    }
    const cost = result.value || {};
    $("cost-per-hour").textContent = usd(cost.per_hour_usd);
    $("cost-total").textContent = usd(cost.total_usd);
    $("cost-since").textContent = (isNumber(cost.since) ? "since " + when(cost.since) : "")
      + (cost.complete === false ? " (some instances have no known price)" : "");
  }

  function renderBurst(result, detail) {
    const panel = $("burst-panel");
    setPanelError(panel, "");
    const box = $("burst-active");
    const empty = $("burst-empty");
    if (result.missing) {
      box.hidden = true;
      empty.hidden = false;
      empty.textContent = "This control plane has no bursts API.";
      $("burst-summary").textContent = "–";
      $("burst-form").hidden = true;
      return;
    }
    if (result.error) {
      setPanelError(panel, "Bursts: " + result.error.message);
      return;
    }
    const bursts = list(result.value);
    const shown = bursts.find((b) => !ENDED_BURST_STATES.has(b.state)) || bursts[0];
    if (!shown) {
      box.hidden = true;
      empty.hidden = false;
      empty.textContent = "No burst yet.";
      $("burst-summary").textContent = "none";
      return;
    }
    const burst = detail && detail.id === shown.id ? { ...shown, ...detail } : shown;
    const active = !ENDED_BURST_STATES.has(burst.state);
    empty.hidden = active;
    empty.textContent = active ? "" : "No active burst; the last one:";
    box.hidden = false;
    box.dataset.burstId = String(burst.id);
    $("burst-id").textContent = String(burst.id);
    $("burst-state").textContent = text(burst.state)
      + (!active && burst.end_reason ? ` (${burst.end_reason})` : "");
    $("burst-state").className = "badge state-" + String(burst.state).replace(/[^a-z_]/g, "");
    $("burst-pool").textContent = "pool " + text(burst.pool);
    $("burst-summary").textContent = active ? text(burst.state) : "none active";
    // No progress when only an idle timeout bounds the burst: an indeterminate bar.
    const progress = isNumber(burst.progress) ? Math.min(1, Math.max(0, burst.progress)) : null;
    const percent = progress === null ? "–" : `${Math.round(progress * 100)}%`;
    const bar = $("burst-progress");
    if (progress === null) bar.removeAttribute("value");
    else bar.value = progress;
    bar.textContent = percent;
    const cancel = $("burst-cancel");
    cancel.hidden = !active;
    cancel.textContent = isArmed("cancel:" + burst.id) ? "Confirm cancel" : "Cancel burst";
    const budget = isNumber(burst.budget_usd) ? ` of ${usd(burst.budget_usd)}` : "";
    $("burst-facts").replaceChildren(...[
      fact("progress", percent),
      fact("replicas ready", `${text(burst.ready_replicas)} / ${text(burst.replicas)}`),
      fact("cost", usd(burst.cost_usd) + budget),
      fact("started", when(burst.started_at ?? burst.created_at)),
      fact(active ? "deadline" : "ended", when(active ? burst.deadline : burst.ended_at)),
      burst.last_error ? fact("last error", burst.last_error) : null,
    ].filter(Boolean));
    const events = Array.isArray(burst.events) ? burst.events : [];
    $("burst-timeline").replaceChildren(...events.map((e) => el("li", null,
      el("span", { className: "time" }, clock(e.time ?? e.ts)),
      el("span", { className: "badge" }, text(e.kind)),
      el("span", null, text(e.message)))));
    if (!events.length) $("burst-timeline").append(el("li", { className: "muted" }, "no events yet"));
  }

  const fact = (label, value) => el("span", { className: "fact" },
    el("span", { className: "muted" }, label + " "), value);

  function renderWorkers(result) {
    const panel = $("workers-panel");
    const body = $("workers-table").querySelector("tbody");
    if (result.error) {
      setPanelError(panel, "Workers: " + result.error.message);
      return;
    }
    setPanelError(panel, "");
    const workers = list(result.value);
    body.replaceChildren(...workers.map(workerRow));
    $("workers-table").hidden = workers.length === 0;
    setEmpty(panel, workers.length ? "" : "No workers enrolled yet.");
    const ready = workers.filter((w) => w.ready).length;
    $("workers-ready").textContent = `${ready} / ${workers.length}`;
  }

  function workerStatus(w) {
    if (w.draining) return ["draining", "state-draining"];
    if (w.ready) return ["ready", "state-ready"];
    return [text(w.status), w.status === "starting" ? "state-starting" : "state-not-ready"];
  }

  function workerRow(w) {
    const [status, cls] = workerStatus(w);
    // The server's "now" from the same reply: no dependence on this browser's clock.
    const serverNow = isNumber(w.last_heartbeat) && isNumber(w.heartbeat_age_s)
      ? w.last_heartbeat + w.heartbeat_age_s : null;
    const uptime = isNumber(serverNow) && isNumber(w.registered_at)
      ? serverNow - w.registered_at : null;
    const key = "drain:" + w.worker_id;
    const drain = el("button", {
      type: "button", className: "drain danger", dataset: { workerId: w.worker_id },
      disabled: w.draining ? "disabled" : null,
      onclick: () => confirmThen(key, () => drainWorker(w.worker_id)),
    }, w.draining ? "Draining" : isArmed(key) ? "Confirm drain" : "Drain");
    const circuits = Object.entries(w.circuits || {});
    return el("tr", { dataset: { workerId: w.worker_id } },
      el("td", { className: "mono" }, w.worker_id),
      el("td", null, el("span", { className: "badge " + cls }, status),
        !w.ready && w.reason ? el("div", { className: "small muted" }, w.reason) : null),
      el("td", null, text(w.model_id)),
      el("td", null, text(w.pool)),
      el("td", null, text(w.instance_type)),
      el("td", null, text(w.queue_depth)),
      el("td", null, text(w.inflight)),
      el("td", null, duration(uptime)),
      el("td", null, isNumber(w.heartbeat_age_s) ? duration(w.heartbeat_age_s) + " ago" : "–"),
      el("td", { className: "circuits" }, circuits.length
        ? circuits.map(([router, s]) => el("span", {
          className: "badge circuit circuit-" + String(s).replace(/[^a-z_]/g, ""),
          title: "router " + router }, `${router}: ${s}`))
        : el("span", { className: "muted" }, "–")),
      el("td", null, drain));
  }

  function renderEvents(result) {
    const panel = $("events-panel");
    if (result.error) {
      setPanelError(panel, "Events: " + result.error.message);
      return;
    }
    setPanelError(panel, "");
    const events = list(result.value);
    $("events-list").replaceChildren(...events.map((e) => el("li", {
      className: "severity-" + String(e.severity).replace(/[^a-z]/g, "") },
      el("span", { className: "time" }, clock(e.time ?? e.ts)),
      el("span", { className: "badge" }, text(e.kind)),
      el("span", { className: "message" }, text(e.message)),
      e.subject ? el("span", { className: "mono muted small" }, e.subject) : null)));
    setEmpty(panel, events.length ? "" : "No events yet.");
  }

  // --- refresh loop ----------------------------------------------------------------------------

  async function settle(promise) {
    try {
      return { value: await promise };
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        return { missing: true };
      }
      return { error: err instanceof ApiError ? err : new ApiError(0, String(err)) };
    }
  }

  function refresh() {
    if (!token()) return Promise.resolve();
    if (state.inFlight) return state.inFlight;
    state.inFlight = (async () => {
      const [workers, events, pools, cost, bursts] = await Promise.all([
        settle(api("GET", "/v1/workers")),
        settle(api("GET", `/v1/events?limit=${EVENTS_SHOWN}`)),
        settle(api("GET", "/v1/pools")),
        settle(api("GET", "/v1/cost")),
        settle(api("GET", "/v1/bursts")),
      ]);
      const results = [workers, events, pools, cost, bursts];
      const refused = results.find((r) => r.error && (r.error.status === 401 || r.error.status === 403));
      if (refused) {
        signOut(refused.error.status === 401
          ? "The control plane refused this token." : refused.error.message);
        return;
      }
      let detail = null;
      const shown = !bursts.error && !bursts.missing && list(bursts.value)
        .find((b) => !ENDED_BURST_STATES.has(b.state));
      if (shown && !Array.isArray(shown.events)) { // a list without timelines: read this one
        const one = await settle(api("GET", "/v1/bursts/" + encodeURIComponent(shown.id)));
        detail = one.value || null;
      }
      renderWorkers(workers);
      renderEvents(events);
      renderPools(pools);
      renderCost(cost);
      renderBurst(bursts, detail);
      const down = results.find((r) => r.error && r.error.status === 0);
      if (down) banner(down.error.message + "; retrying.", "down");
      else if ($("banner").classList.contains("down")) banner("");
      $("refresh-status").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.refreshed = String(Date.now());
    })().finally(() => { state.inFlight = null; });
    return state.inFlight;
  }

  // body[data-polling] says whether a poll is scheduled ("on") or not ("paused", "off").
  function stopPolling(why) {
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
    document.body.dataset.polling = why;
  }

  function schedule() {
    stopPolling(document.hidden ? "paused" : "off");
    if (document.hidden || !token()) return;
    state.pollTimer = setTimeout(() => { refresh().finally(schedule); }, POLL_MS);
    document.body.dataset.polling = "on";
  }

  function onVisibility() {
    if (!token()) return;
    if (document.hidden) {
      stopPolling("paused");
      $("refresh-status").textContent = "paused while the tab is hidden";
    } else {
      refresh().finally(schedule);
    }
  }

  // --- actions ---------------------------------------------------------------------------------

  function isArmed(key) {
    const until = state.armed.get(key);
    return until !== undefined && until > Date.now();
  }

  // Destructive actions take two clicks: the first arms the button for CONFIRM_MS.
  function confirmThen(key, action) {
    if (isArmed(key)) {
      state.armed.delete(key);
      action();
    } else {
      state.armed.set(key, Date.now() + CONFIRM_MS);
      setTimeout(() => { state.armed.delete(key); refresh(); }, CONFIRM_MS + 50);
    }
    rerenderLocal();
  }

  // Re-render the buttons' labels without waiting for the next poll.
  function rerenderLocal() {
    for (const button of document.querySelectorAll("button.drain")) {
      const key = "drain:" + button.dataset.workerId;
      if (!button.disabled) button.textContent = isArmed(key) ? "Confirm drain" : "Drain";
    }
    const burstId = $("burst-active").dataset.burstId;
    $("burst-cancel").textContent = isArmed("cancel:" + burstId) ? "Confirm cancel" : "Cancel burst";
  }

  async function act(description, call) {
    try {
      await call();
      banner(description, "info");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        signOut("The control plane refused this token.");
        return;
      }
      banner(err.message, "error");
    }
    await refresh();
  }

  const drainWorker = (workerId) => act(`Worker ${workerId} is draining.`,
    () => api("POST", `/v1/workers/${encodeURIComponent(workerId)}/drain`, { reason: "dashboard" }));

  function cancelBurst() {
    const burstId = $("burst-active").dataset.burstId;
    if (!burstId) return;
    confirmThen("cancel:" + burstId, () => act(`Burst ${burstId} cancelled.`,
      () => api("POST", `/v1/bursts/${encodeURIComponent(burstId)}/cancel`)));
  }

  function optionalNumber(input) {
    return input.value.trim() === "" ? null : Number(input.value);
  }

  function onScale(event) {
    event.preventDefault();
    const pool = $("scale-pool").value;
    const replicas = Number($("scale-replicas").value);
    act(`Pool ${pool} scaled to ${replicas} replicas.`, () => api("POST",
      `/v1/pools/${encodeURIComponent(pool)}/scale`, { replicas }));
  }

  function onStartBurst(event) {
    event.preventDefault();
    const pool = $("burst-pool-input").value;
    const body = {
      pool,
      replicas: Number($("burst-replicas").value),
      duration_s: optionalNumber($("burst-duration")),
      idle_timeout_s: null,
      budget_usd: optionalNumber($("burst-budget")),
    };
    act(`Burst started on pool ${pool}.`, () => api("POST", "/v1/bursts", body));
  }

  // --- signing in and out ----------------------------------------------------------------------

  function showSignedIn(signedIn) {
    $("sign-in").hidden = signedIn;
    $("dashboard").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
    $("refresh-now").hidden = !signedIn;
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling("off");
    showSignedIn(false);
    banner("");
    $("refresh-status").textContent = "not signed in";
    $("sign-in-error").textContent = message || "";
    $("sign-in-error").hidden = !message;
    $("token-input").focus();
  }

  function onSignIn(event) {
    event.preventDefault();
    const value = $("token-input").value.trim();
    $("token-input").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("sign-in-error").hidden = true;
    showSignedIn(true);
    $("refresh-status").textContent = "loading…";
    refresh().finally(schedule);
  }

  function start() {
    $("token-form").addEventListener("submit", onSignIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    $("refresh-now").addEventListener("click", () => { refresh(); });
    $("scale-form").addEventListener("submit", onScale);
    $("burst-form").addEventListener("submit", onStartBurst);
    $("burst-cancel").addEventListener("click", cancelBurst);
    document.addEventListener("visibilitychange", onVisibility);
    if (token()) {
      showSignedIn(true);
      refresh().finally(schedule);
    } else {
      signOut("");
    }
  }

  start();
})();
