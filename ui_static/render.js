// Rendering: every DOM update of the page lives here; app.js decides what to show.

const $ = (selector) => document.querySelector(selector);
const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

const STATUS_TEXT = {
  idle: "Idle",
  connecting: "Connecting…",
  starting: "Starting session…",
  ready: "Ready",
  generating: "Generating…",
  reconnecting: "Reconnecting…",
  disconnected: "Disconnected",
  error: "Error",
  closed: "Closed",
};

export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms)} ms`;
}

const number = new Intl.NumberFormat("en");
export const formatCount = (value) => number.format(value);

// -- header ------------------------------------------------------------------------------

export function renderStatus(state, { delay, context } = {}) {
  const status = byTestId("status");
  status.dataset.state = state;
  if (context !== undefined) status.dataset.context = context;
  let text = STATUS_TEXT[state] ?? state;
  if (state === "reconnecting" && delay) text = `Reconnecting… (retry in ${Math.ceil(delay / 1000)} s)`;
  status.querySelector(".status-text").textContent = text;
  const busy = state === "generating";
  $("#result").setAttribute("aria-busy", String(busy));
}

export function renderEngine(ready) {
  const engine = $("#engine");
  if (!ready || !ready.model) {
    engine.hidden = true;
    return;
  }
  engine.hidden = false;
  engine.textContent = `${ready.model} · block ${ready.block_size} tokens`;
  engine.title = `session ${ready.session_id}, warm-ups: ${ready.warmups}`;
}

// -- engine panel (GET /status) ------------------------------------------------------------

const percent = (share) =>
  typeof share === "number" && Number.isFinite(share) ? `${(share * 100).toFixed(1)} %` : "—";
const shown = (value) => (value === null || value === undefined ? "—" : String(value));

/** Fill the engine panel from a `/status` body, or (`status` null) say why there is none. */
export function renderStatusPanel(status, problem = "") {
  const engine = status?.engine ?? {};
  byTestId("status-model").textContent = engine.ok === false ? "unreachable" : shown(engine.model);
  byTestId("status-kv").textContent = percent(engine.kv_cache_usage);
  byTestId("status-hits").textContent = percent(engine.prefix_cache_hit_rate);
  byTestId("status-sessions").textContent = shown(status?.sessions?.open);
  byTestId("status-warmups").textContent = shown(status?.warmups?.in_flight);
  byTestId("status-events").textContent = shown(status?.kv_events?.source);
  const rewarm = byTestId("status-rewarm");
  rewarm.textContent = status?.rewarm?.state === "running" ? status.rewarm.message : "";
  rewarm.hidden = !rewarm.textContent;
  const panel = byTestId("status-panel");
  panel.dataset.state = status ? "ok" : "unavailable";
  panel.title = problem || (engine.error ?? "");
}

// -- error banner ------------------------------------------------------------------------

export function showError(code, message) {
  const banner = byTestId("error");
  banner.querySelector(".banner-code").textContent = code || "error";
  banner.querySelector(".banner-message").textContent = message || "";
  banner.hidden = false;
}

export function hideError() {
  byTestId("error").hidden = true;
}

// -- context -----------------------------------------------------------------------------

export function renderContextNote(value, chat, state = null) {
  let note;
  if (state) {
    const until = new Date(state.expires_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    note = `A saved state: this system prompt (${state.prompt_tokens} tokens) is kept in vLLM's cache until ${until}.`;
  } else if (value === chat) {
    note = "Chat with the system prompt below; the prompt is the cached prefix.";
  } else {
    note = `Text-to-SQL: the model writes one PostgreSQL query, run read-only on “${value}”. Its schema is the cached prefix.`;
  }
  $("#context-note").textContent = note;
}

/** The saved states as options (`state:<id>`), after the plain chat. */
export function renderStates(select, states, prefix) {
  select.querySelector('optgroup[data-kind="states"]')?.remove();
  if (states.length === 0) return;
  const group = document.createElement("optgroup");
  group.label = "Saved state";
  group.dataset.kind = "states";
  for (const state of states) {
    const option = document.createElement("option");
    option.value = prefix + state.id;
    const text = state.input.messages[0].content.replace(/\s+/g, " ");
    option.textContent = `${text.length > 48 ? `${text.slice(0, 47)}…` : text} (${state.prompt_tokens} tokens)`;
    group.append(option);
  }
  select.append(group);
}

export function renderDatabases(select, databases) {
  const chat = select.querySelector('option[value="*chat"]');
  select.querySelector('optgroup[data-kind="databases"]')?.remove();
  if (databases.length === 0) return;
  const group = document.createElement("optgroup");
  group.label = "Text-to-SQL database";
  group.dataset.kind = "databases";
  for (const name of databases) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    group.append(option);
  }
  select.insertBefore(group, chat);
}

// -- the question: cached-prefix highlight and meter ---------------------------------------

export function renderCached(text, cachedChars, cache, blockSize) {
  $("#mirror-cached").textContent = text.slice(0, cachedChars);
  // A trailing newline needs a character after it, or the mirror is one line short.
  $("#mirror-rest").textContent = `${text.slice(cachedChars)}\u200b`;
  const share = text.length ? cachedChars / text.length : 0;
  $("#cache-fill").style.width = `${(share * 100).toFixed(1)}%`;
  const label = $("#cache-meter-label");
  const blocks = blockSize ? `whole blocks of ${blockSize} tokens` : "whole KV blocks";
  if (cache.cachedTokens === 0 && cachedChars === 0) {
    label.textContent = text
      ? `Nothing cached yet: only ${blocks} are cached, and the prompt has not filled one.`
      : "Nothing cached yet: the context is warmed first, then your question as you type.";
    return;
  }
  const tokens = `${formatCount(cache.cachedTokens)} prompt tokens cached`;
  label.textContent = cachedChars
    ? `${tokens}: the context and about ${formatCount(cachedChars)} of ${formatCount(text.length)} characters of your question (highlighted).`
    : `${tokens}: the context. Your question joins it as it fills ${blocks}.`;
}

export function syncMirrorScroll() {
  $("#mirror").scrollTop = $("#question").scrollTop;
}

// -- the warm-up timeline ------------------------------------------------------------------

const MAX_MARKS = 300;

export function clearTimeline() {
  $("#timeline").replaceChildren();
  $("#warm-count").textContent = "0";
  $("#timeline-empty").hidden = false;
}

export function addWarmMark(frame, sinceStartMs) {
  const list = $("#timeline");
  const item = document.createElement("li");
  item.className = frame.submit_ready ? "mark ready" : frame.seq === 0 ? "mark context" : "mark";
  item.dataset.testid = "warm-mark";
  item.dataset.seq = String(frame.seq);
  const what = frame.seq === 0 ? "context" : frame.submit_ready ? "whole prompt" : `seq ${frame.seq}`;
  item.title =
    `${what}: landed ${formatMs(sinceStartMs)} after the session started, took ${formatMs(frame.ms)}; ` +
    `${formatCount(frame.cached_tokens)} tokens cached of ${formatCount(frame.tokens)} sent`;
  const when = document.createElement("span");
  when.className = "mark-when";
  when.textContent = `+${(sinceStartMs / 1000).toFixed(1)} s`;
  const tag = frame.seq === 0 ? "context" : frame.submit_ready ? "ready" : "";
  if (tag) {
    const label = document.createElement("span");
    label.className = "mark-tag";
    label.textContent = tag;
    when.append(label);
  }
  const took = document.createElement("span");
  took.className = "mark-took";
  took.textContent = `took ${formatMs(frame.ms)}`;
  const cached = document.createElement("span");
  cached.className = "mark-cached";
  cached.textContent = `${formatCount(frame.cached_tokens)} cached`;
  item.append(when, took, cached);
  list.append(item);
  while (list.children.length > MAX_MARKS) list.firstElementChild.remove();
  $("#warm-count").textContent = String(Number($("#warm-count").textContent) + 1);
  $("#timeline-empty").hidden = true;
  list.scrollLeft = list.scrollWidth;
}

// -- the answer ----------------------------------------------------------------------------

export function clearAnswer() {
  byTestId("answer").textContent = "";
  for (const id of ["ttft", "cached", "warmups", "total"]) byTestId(id).textContent = "—";
  $("#sql-box").hidden = true;
  $("#rows-box").hidden = true;
  byTestId("refused").hidden = true;
}

export function appendToken(text) {
  byTestId("answer").append(text);
}

/** The answer's first token: its TTFT, the prompt's length and what the session believed
 * cached at submit (vLLM's own count replaces it at `done`). */
export function renderFirstToken(first) {
  byTestId("ttft").textContent = formatMs(first.ttft_ms);
  const cached = byTestId("cached");
  cached.textContent = `≈ ${formatCount(first.warmed_tokens)} / ${formatCount(first.prompt_tokens)}`;
  cached.title = "Warmed by this session before submit; vLLM's own count comes with the last token.";
}

export function renderDone(done) {
  const answer = byTestId("answer");
  if (!answer.textContent) answer.textContent = done.text || "";
  if (done.finish_reason === "cancelled") {
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = answer.textContent ? " [cancelled]" : "[cancelled]";
    answer.append(note);
  }
  byTestId("ttft").textContent = formatMs(done.ttft_ms);
  byTestId("cached").textContent = `${formatCount(done.cached_tokens)} / ${formatCount(done.prompt_tokens)}`;
  byTestId("cached").title = "Prompt tokens vLLM found in its prefix cache / all prompt tokens.";
  byTestId("warmups").textContent = formatCount(done.warm_pieces?.landed ?? 0);
  byTestId("total").textContent = formatMs(done.total_ms);
  if (!("sql" in done) && !("refused" in done)) return;
  if (done.sql) {
    byTestId("sql").textContent = done.sql;
    $("#sql-box").hidden = false;
  }
  if (done.refused) {
    const refused = byTestId("refused");
    refused.textContent = `Not run: ${done.refused}`;
    refused.hidden = false;
  } else if (done.columns) {
    renderRows(done);
  }
}

function renderRows(done) {
  const table = byTestId("result-table");
  const head = document.createElement("thead");
  const headRow = document.createElement("tr");
  for (const column of done.columns) {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = column;
    headRow.append(cell);
  }
  head.append(headRow);
  const body = document.createElement("tbody");
  for (const row of done.rows) {
    const tr = document.createElement("tr");
    for (const value of row) {
      const cell = document.createElement("td");
      if (value === null) {
        cell.textContent = "NULL";
        cell.className = "null";
      } else {
        cell.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
        if (typeof value === "number") cell.className = "num";
      }
      tr.append(cell);
    }
    body.append(tr);
  }
  if (done.rows.length === 0) {
    const tr = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = Math.max(1, done.columns.length);
    cell.className = "empty";
    cell.textContent = "The query returned no rows.";
    tr.append(cell);
    body.append(tr);
  }
  table.replaceChildren(head, body);
  const rows = done.rows.length;
  let meta = `${formatCount(rows)} row${rows === 1 ? "" : "s"} · ${formatMs(done.query_ms)}`;
  if (done.truncated) meta += ` · truncated: only the first ${formatCount(rows)} rows are shown`;
  $("#rows-meta").textContent = meta;
  $("#rows-box").hidden = false;
}

// -- compare: warm-ups off vs on -----------------------------------------------------------

export function showCompare(visible) {
  $("#compare-panel").hidden = !visible;
}

export function clearCompare() {
  byTestId("ttft-cold").textContent = "—";
  byTestId("ttft-warm").textContent = "—";
  $("#cold-note").textContent = "time to first token";
  $("#warm-note").textContent = "time to first token";
  $("#compare-verdict").textContent = "";
}

export function renderCompareSide(side, result) {
  const note = $(side === "cold" ? "#cold-note" : "#warm-note");
  const value = byTestId(side === "cold" ? "ttft-cold" : "ttft-warm");
  if (result === "running") {
    value.textContent = "…";
    note.textContent = "generating";
    return;
  }
  if (result.type !== "done") {
    value.textContent = "—";
    note.textContent = result.message || "failed";
    return;
  }
  value.textContent = formatMs(result.ttft_ms);
  note.textContent = `${formatCount(result.cached_tokens)} / ${formatCount(result.prompt_tokens)} tokens cached`;
}

/** A compare side's TTFT, at its first token (the rest comes at `done`). */
export function renderCompareFirst(side, first) {
  byTestId(side === "cold" ? "ttft-cold" : "ttft-warm").textContent = formatMs(first.ttft_ms);
  $(side === "cold" ? "#cold-note" : "#warm-note").textContent = "time to first token · generating";
}

export function renderVerdict(cold, warm) {
  const verdict = $("#compare-verdict");
  if (cold?.type !== "done" || warm?.type !== "done" || !cold.ttft_ms || !warm.ttft_ms) {
    verdict.textContent = "";
    return;
  }
  const ratio = cold.ttft_ms / warm.ttft_ms;
  verdict.textContent =
    ratio >= 1.05
      ? `The first token came ${ratio.toFixed(1)}× sooner with warm-ups.`
      : "About the same: this prompt was short, or already cached.";
}

// -- controls ------------------------------------------------------------------------------

export function renderControls({ ready, generating }) {
  $("#submit").disabled = !ready || generating;
  $("#cancel").hidden = !generating;
  $("#submit").textContent = generating ? "Generating…" : "Submit";
}
