// Saved states: a system prompt (a document) kept as a named prefix state (`POST /v1/states`),
// kept in vLLM's cache by the server until its TTL ends, and offered as a context.

export const STATE_PREFIX = "state:";
const TTL_S = 3600;

async function answer(reply, what) {
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    const error = body.error ?? {};
    throw Object.assign(new Error(error.message || `${what} answered ${reply.status}`), {
      code: error.code || `http_${reply.status}`,
    });
  }
  return body;
}

/** The system prompt a state was saved from, or null (another kind of state). */
export function stateSystem(state) {
  const messages = state?.input?.messages;
  const single = Array.isArray(messages) && messages.length === 1 && !state.parent;
  return single && messages[0].role === "system" ? messages[0].content : null;
}

/** The tenant's states that hold a system prompt, oldest first. */
export async function listStates(headers) {
  const reply = await fetch("/v1/states", { headers: { Accept: "application/json", ...headers } });
  const body = await answer(reply, "GET /v1/states");
  return (body.data ?? []).filter((state) => stateSystem(state) !== null);
}

/** Save `system` as a state; `sessionId` (a session with a cache of its own) gives it that salt. */
export async function saveState(system, headers, sessionId) {
  const reply = await fetch("/v1/states", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json",
      ...headers,
      ...(sessionId ? { "X-Session-Id": sessionId } : {}),
    },
    body: JSON.stringify({ messages: [{ role: "system", content: system }], ttl_s: TTL_S }),
  });
  return answer(reply, "POST /v1/states");
}
