// The engine panel: GET /status every few seconds (vLLM's cache figures, sessions, warm-ups).

import { renderStatusPanel } from "./render.js";

const REFRESH_MS = 4000;

/** Poll `/status` with the headers `headers()` gives (the API key) until the page closes. */
export function startStatusPanel(headers) {
  const refresh = async () => {
    try {
      const reply = await fetch("/status", { headers: { Accept: "application/json", ...headers() } });
      if (reply.ok) renderStatusPanel(await reply.json());
      else renderStatusPanel(null, `GET /status answered ${reply.status}`);
    } catch (error) {
      renderStatusPanel(null, `GET /status failed: ${error.message}`);
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  };
  refresh();
}
