// Server-Sent Events from the API (an organization's events, a resource's inspector), with
// reconnection: the browser's EventSource retries by itself when a stream ends, but gives up after
// an error answer (a 503 when the gateway is busy, a restart); then we open a new one, backing off.
import { useEffect, useRef, useState } from "./html.js";
import { BASE } from "./api.js";

const MAX_BACKOFF = 30_000;

/**
 * Listen to `path` (under /api/v1) while the component is shown; `handlers` maps event names to
 * functions of the parsed data. Returns the state: "connecting", "live" or "reconnecting".
 * Pass path null to listen to nothing.
 */
export function useEvents(path, handlers) {
  const [state, setState] = useState("connecting");
  const current = useRef(handlers);
  current.current = handlers;

  useEffect(() => {
    if (!path) return undefined;
    let source = null;
    let timer = null;
    let backoff = 1000;
    let stopped = false;

    function open() {
      source = new EventSource(BASE + path);
      source.onopen = () => {
        backoff = 1000;
        setState("live");
      };
      source.onerror = () => {
        if (stopped) return;
        setState("reconnecting");
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          timer = setTimeout(open, backoff);
          backoff = Math.min(backoff * 2, MAX_BACKOFF);
        }
      };
      for (const name of Object.keys(current.current)) {
        source.addEventListener(name, (event) => {
          let data;
          try {
            data = JSON.parse(event.data);
          } catch {
            return;
          }
          current.current[name]?.(data);
        });
      }
    }

    setState("connecting");
    open();
    return () => {
      stopped = true;
      clearTimeout(timer);
      source?.close();
    };
  }, [path]);
  return state;
}

/** The words for a stream's state, for a status line. */
export const STATE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
};
