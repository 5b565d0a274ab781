// The panels: each renders one settled API result ({value} | {missing} | {error}) into its part
// of the page. A missing API (404) is an empty state; another error is shown in the panel and
// leaves the last rendering in place.

import { list } from "./api.js";
import {
  $, clock, duration, el, isNumber, num, setEmpty, setPanelError, text, usd, when,
} from "./dom.js";

export const ENDED_BURST_STATES = new Set(["completed", "failed"]);

export function renderPools(result) {
  const panel = $("pools-panel");
  const body = $("pools-table").querySelector("tbody");
  body.replaceChildren();
  setPanelError(panel, "");
  let pools = [];
  if (result.missing) {
    setEmpty(panel, "This control plane has no pools API.");
  } else if (result.error) {
    setPanelError(panel, "Pools: " + result.error.message);
    setEmpty(panel, "");
    return;
  } else {
    pools = list(result.value);
    for (const pool of pools) body.append(poolRow(pool));
    setEmpty(panel, pools.length ? "" : "No pools yet (PUT /v1/pools/{name}).");
  }
  $("pools-table").hidden = pools.length === 0;
  const names = pools.map(poolName);
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

export function renderCost(result) {
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

// The running burst, else the last one. `confirmations`: which buttons are armed (app.js).
export function renderBurst(result, detail, confirmations) {
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
  const armed = confirmations.isArmed("cancel:" + burst.id);
  cancel.textContent = armed ? "Confirm cancel" : "Cancel burst";
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

// `onDrain(workerId)`: the drain button's action, once confirmed.
export function renderWorkers(result, confirmations, onDrain) {
  const panel = $("workers-panel");
  const body = $("workers-table").querySelector("tbody");
  if (result.error) {
    setPanelError(panel, "Workers: " + result.error.message);
    return;
  }
  setPanelError(panel, "");
  const workers = list(result.value);
  body.replaceChildren(...workers.map((w) => workerRow(w, confirmations, onDrain)));
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

function workerRow(w, confirmations, onDrain) {
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
    onclick: () => confirmations.confirm(key, () => onDrain(w.worker_id)),
  }, w.draining ? "Draining" : confirmations.isArmed(key) ? "Confirm drain" : "Drain");
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

export function renderEvents(result) {
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
