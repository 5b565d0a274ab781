// Flotilla dashboard: reads the control plane's admin API and renders it; no build step.
//
// - The admin token is typed in by the operator, kept in this tab's sessionStorage only, and
//   sent as `Authorization: Bearer` (api.js); never put in a URL, never logged.
// - Every piece of data reaches the page as text (dom.js `el`), never as markup: names and
//   messages come from workers, routers and the store.
// - Polls every POLL_MS while the tab is visible; stops while it is hidden and refreshes at once
//   when it comes back. One refresh at a time.
// - Panels fail separately (panels.js); a refused token returns to the sign-in form.

import { ApiError, api, forgetToken, list, saveToken, settle, token } from "./api.js";
import { Confirmations } from "./confirm.js";
import { $, banner } from "./dom.js";
import {
  ENDED_BURST_STATES, renderBurst, renderCost, renderEvents, renderPools, renderWorkers,
} from "./panels.js";

const POLL_MS = 5000;
const CONFIRM_MS = 4000;
const EVENTS_SHOWN = 30;

const state = { pollTimer: null, inFlight: null };

// --- refresh loop ----------------------------------------------------------------------------

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
    const refused = results.find((r) => r.error && [401, 403].includes(r.error.status));
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
    renderWorkers(workers, confirmations, drainWorker);
    renderEvents(events);
    renderPools(pools);
    renderCost(cost);
    renderBurst(bursts, detail, confirmations);
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

// The armed buttons' labels, at once (not at the next poll).
function relabel() {
  for (const button of document.querySelectorAll("button.drain")) {
    const key = "drain:" + button.dataset.workerId;
    if (button.disabled) continue;
    button.textContent = confirmations.isArmed(key) ? "Confirm drain" : "Drain";
  }
  const armed = confirmations.isArmed("cancel:" + $("burst-active").dataset.burstId);
  $("burst-cancel").textContent = armed ? "Confirm cancel" : "Cancel burst";
}

const confirmations = new Confirmations(CONFIRM_MS, relabel);

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

function drainWorker(workerId) {
  return act(`Worker ${workerId} is draining.`,
    () => api("POST", `/v1/workers/${encodeURIComponent(workerId)}/drain`,
      { reason: "dashboard" }));
}

function cancelBurst() {
  const burstId = $("burst-active").dataset.burstId;
  if (!burstId) return;
  confirmations.confirm("cancel:" + burstId, () => act(`Burst ${burstId} cancelled.`,
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
  forgetToken();
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
  saveToken(value);
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
