// The page: pick a context, type (each keystroke is an `input` frame), submit, show the answer.
// session.js owns the sockets, cachemap.js the cached-prefix estimate, render.js the DOM.

import { CacheMap } from "./cachemap.js";
import * as view from "./render.js";
import { Session, randomId, socketUrl } from "./session.js";
import { STATE_PREFIX, listStates, saveState, stateSystem } from "./states.js";
import { startStatusPanel } from "./status.js";

const CHAT = "*chat";
const KEY_STORAGE = "prefill-ahead.api-key";
const $ = (selector) => document.querySelector(selector);

const ui = {
  context: $("#context"),
  chatSettings: $("#chat-settings"),
  system: $("#system"),
  applySystem: $("#apply-system"),
  saveState: $("#save-state"),
  question: $("#question"),
  submit: $("#submit"),
  cancel: $("#cancel"),
  compare: $("#compare"),
  keySettings: $("#key-settings"),
  apiKey: $("#api-key"),
  keyForm: $("#key-form"),
};

const page = {
  // The tenant's shared cache by default: every visitor of the app finds the context (schema,
  // system prompt) already prefilled. `?cache=visitor` gives this visitor a cache of its own
  // (its own salt, for as long as the page is open): nobody can probe its typed text through
  // cache timing, but it pays the whole context prefill itself.
  namespace: new URLSearchParams(location.search).get("cache") === "visitor" ? randomId() : null,
  context: { system: ui.system.value }, // the `context` of the next start frame
  contextKey: CHAT,
  appliedSystem: ui.system.value,
  userChoseContext: false,
  databasesLoaded: false,
  states: new Map(), // saved states by id (those holding a system prompt)
  sessionId: null, // the typing session's id, from its ready frame
  seq: 0,
  cache: new CacheMap(),
  warm: null, // the session the user types into
  cold: null, // the baseline session (warm-ups off), while the compare switch is on
  running: false, // a submit (cold then warm, when comparing) is under way
  comparing: false, // the warm session's answer is the compare panel's warm side
  abort: null, // resolves the running submit's wait early (cancel, failed start)
  lastState: { state: "connecting" },
};

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// -- contexts ------------------------------------------------------------------------------

async function fetchDatabases() {
  const reply = await fetch("/contexts", { headers: { Accept: "application/json", ...authHeaders() } });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    const error = body.error ?? {};
    if (reply.status === 401) ui.keySettings.open = true;
    throw Object.assign(new Error(error.message || `GET /contexts answered ${reply.status}`), {
      code: error.code || `http_${reply.status}`,
    });
  }
  return Array.isArray(body.databases) ? body.databases : [];
}

/** Fill the selector; true when the databases arrived. */
async function loadDatabases() {
  try {
    const databases = await fetchDatabases();
    page.databasesLoaded = true;
    const previous = ui.context.value;
    view.renderDatabases(ui.context, databases);
    if (page.userChoseContext && [...ui.context.options].some((o) => o.value === previous)) {
      ui.context.value = previous;
    } else {
      ui.context.value = databases.includes("demo") ? "demo" : (databases[0] ?? CHAT);
    }
    return true;
  } catch (error) {
    view.showError(error.code || "contexts_unavailable", `Could not load the databases: ${error.message}`);
    return false;
  }
}

/** Offer the tenant's saved states as contexts; keep the chosen one if it is still there. */
async function loadStates() {
  try {
    const states = await listStates(authHeaders());
    page.states = new Map(states.map((state) => [state.id, state]));
    const previous = ui.context.value;
    view.renderStates(ui.context, states, STATE_PREFIX);
    if ([...ui.context.options].some((o) => o.value === previous)) ui.context.value = previous;
  } catch (error) {
    if (error.code === "invalid_api_key") return; // the databases' error already says so
    view.showError(error.code || "states_unavailable", `Could not load the saved states: ${error.message}`);
  }
}

async function saveSystemAsState() {
  ui.saveState.disabled = true;
  try {
    // A cache of this visitor's own: the state lives under the session's salt, so it hits.
    const sessionId = page.namespace ? page.sessionId : null;
    const state = await saveState(ui.system.value, authHeaders(), sessionId);
    await loadStates();
    ui.context.value = STATE_PREFIX + state.id;
    page.userChoseContext = true;
    restartWarm();
  } catch (error) {
    view.showError(error.code || "state_not_saved", `Could not save the state: ${error.message}`);
  } finally {
    ui.saveState.disabled = false;
  }
}

function readContext() {
  const value = ui.context.value;
  const state = value.startsWith(STATE_PREFIX) ? page.states.get(value.slice(STATE_PREFIX.length)) : null;
  ui.chatSettings.hidden = value !== CHAT;
  view.renderContextNote(value, CHAT, state);
  page.contextKey = value;
  if (state) page.context = { system: stateSystem(state) };
  else page.context = value === CHAT ? { system: page.appliedSystem } : { database: value };
}

function restartWarm() {
  readContext();
  page.cache.reset();
  view.clearTimeline();
  renderCached();
  page.warm.restart();
}

// -- sessions ------------------------------------------------------------------------------

function makeSession({ startFrame, onFrame, onState }) {
  const key = apiKey();
  return new Session({
    url: socketUrl("/ws/session"),
    protocols: key ? [`prefill.bearer.${key}`] : [],
    makeStart: startFrame,
    onFrame,
    onState,
  });
}

function createWarmSession() {
  page.warm = makeSession({
    startFrame: () => ({
      type: "start",
      context: page.context,
      ...(page.namespace ? { cache_namespace: page.namespace } : {}),
    }),
    onFrame: onWarmFrame,
    onState: (state, info) => {
      page.lastState = { state, ...info };
      update();
    },
  });
  page.warm.connect();
}

function onWarmFrame(frame) {
  switch (frame.type) {
    case "ready":
      onReady(frame);
      break;
    case "warm":
      page.cache.onWarm(frame);
      view.addWarmMark(frame, performance.now() - page.warm.startedAt);
      renderCached();
      break;
    case "token":
      view.appendToken(frame.text);
      if (frame.ttft_ms === undefined) break;
      view.renderFirstToken(frame); // the answer's first token: its TTFT is known now
      if (page.comparing) view.renderCompareFirst("warm", frame);
      break;
    case "error":
      view.showError(frame.code, frame.message);
      break;
    default:
      break;
  }
}

function onReady(frame) {
  page.sessionId = frame.session_id;
  view.renderEngine(frame);
  view.renderStatus("ready", { context: page.contextKey });
  page.cache.reset();
  view.clearTimeline();
  const text = ui.question.value;
  if (text) sendInput(text); // a new session (or a reconnect): warm what is already typed
  renderCached();
  if (!page.databasesLoaded) {
    loadDatabases().then(async (loaded) => {
      if (loaded) await loadStates();
      if (loaded && !page.userChoseContext && ui.context.value !== page.contextKey) restartWarm();
    });
  }
}

function createColdSession() {
  page.cold = makeSession({
    // A fresh namespace on every (re)start: each baseline run finds nothing of its prompt cached.
    startFrame: () => ({
      type: "start",
      context: page.context,
      warmups: "off",
      cache_namespace: randomId(),
    }),
    onFrame: (frame) => {
      if (frame.type === "error") view.showError(`cold session: ${frame.code}`, frame.message);
      if (frame.type === "token" && frame.ttft_ms !== undefined) view.renderCompareFirst("cold", frame);
    },
    onState: (state, info) => {
      if (state === "error" && page.abort) page.abort({ type: "error", ...info.error });
    },
  });
  page.cold.connect();
}

function setCompare(on) {
  view.showCompare(on);
  view.clearCompare();
  if (on && !page.cold) createColdSession();
  if (!on && page.cold) {
    page.cold.close();
    page.cold = null;
  }
}

// -- typing and submitting -----------------------------------------------------------------

function sendInput(text) {
  page.seq += 1;
  page.cache.remember(page.seq, text);
  page.warm.input(text, page.seq);
}

function renderCached() {
  const text = ui.question.value;
  const blockSize = page.warm?.info?.block_size;
  view.renderCached(text, page.cache.cachedChars(text), page.cache, blockSize);
}

function autosize() {
  const box = ui.question;
  box.style.height = "auto";
  box.style.height = `${box.scrollHeight + box.offsetHeight - box.clientHeight}px`;
}

function onQuestionInput() {
  sendInput(ui.question.value);
  autosize();
  renderCached();
  update();
}

function abortable(promise) {
  return Promise.race([promise, new Promise((resolve) => (page.abort = resolve))]);
}

async function runCold(text) {
  view.renderCompareSide("cold", "running");
  const ready = await abortable(page.cold.restart().then(() => null));
  if (ready) return ready; // aborted before the baseline session was ready
  return abortable(page.cold.submit(text, 0));
}

async function submit() {
  const text = ui.question.value;
  if (page.running || !page.warm.isReady() || !text.trim()) return;
  page.running = true;
  view.hideError();
  view.clearAnswer();
  update();
  const comparing = Boolean(page.cold);
  let cold = null;
  if (comparing) {
    view.clearCompare();
    cold = await runCold(text); // first, alone, so the two do not compete for the engine
    view.renderCompareSide("cold", cold);
  }
  if (!comparing || cold.code !== "cancelled") {
    if (comparing) view.renderCompareSide("warm", "running");
    page.comparing = comparing; // the warm side's first token fills its TTFT at once
    const warm = await page.warm.submit(text, page.seq);
    page.comparing = false;
    if (warm.type === "done") view.renderDone(warm);
    else if (warm.code === "disconnected") view.showError(warm.code, warm.message);
    if (comparing) {
      view.renderCompareSide("warm", warm);
      view.renderVerdict(cold, warm);
    }
  } else {
    view.renderCompareSide("warm", { type: "error", message: "cancelled" });
  }
  page.running = false;
  page.abort = null;
  update();
}

function cancel() {
  if (page.abort) page.abort({ type: "error", code: "cancelled", message: "cancelled" });
  page.cold?.cancel();
  page.warm.cancel();
}

function update() {
  const warmState = page.warm?.state ?? "connecting";
  const state = page.running ? "generating" : warmState;
  view.renderStatus(state, { delay: page.lastState.delay });
  if (["connecting", "reconnecting", "error", "closed"].includes(warmState)) view.renderEngine(null);
  view.renderControls({
    ready: warmState === "ready" && ui.question.value.trim() !== "",
    generating: page.running,
  });
}

// -- wiring --------------------------------------------------------------------------------

function bind() {
  ui.question.addEventListener("input", onQuestionInput);
  ui.question.addEventListener("scroll", view.syncMirrorScroll);
  ui.question.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.altKey) return;
    event.preventDefault();
    submit();
  });
  ui.submit.addEventListener("click", submit);
  ui.cancel.addEventListener("click", cancel);
  ui.compare.addEventListener("change", () => setCompare(ui.compare.checked));
  ui.context.addEventListener("change", () => {
    page.userChoseContext = true;
    restartWarm();
  });
  ui.system.addEventListener("input", () => {
    ui.applySystem.disabled = ui.system.value === page.appliedSystem;
  });
  ui.saveState.addEventListener("click", saveSystemAsState);
  ui.applySystem.addEventListener("click", () => {
    page.appliedSystem = ui.system.value;
    ui.applySystem.disabled = true;
    restartWarm();
  });
  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      sessionStorage.setItem(KEY_STORAGE, ui.apiKey.value.trim());
    } catch {
      /* storage blocked: the key lasts until the page is reloaded */
    }
    view.hideError();
    reconnectAll();
  });
  document.querySelector(".banner-close").addEventListener("click", view.hideError);
  window.addEventListener("online", () => {
    page.warm?.retryNow();
    page.cold?.retryNow();
  });
  window.addEventListener("resize", autosize);
}

function reconnectAll() {
  page.warm?.close();
  page.cold?.close();
  page.cold = null;
  page.databasesLoaded = false;
  createWarmSession();
  if (ui.compare.checked) createColdSession();
}

async function main() {
  bind();
  ui.compare.checked = false;
  ui.apiKey.value = apiKey();
  view.clearAnswer();
  renderCached();
  await loadDatabases();
  await loadStates();
  readContext();
  createWarmSession();
  update();
  startStatusPanel(authHeaders);
}

main();
