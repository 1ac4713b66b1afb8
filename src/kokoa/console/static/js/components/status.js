// Small shared pieces: badges, loading and error states, a data loader hook, live announcements.
import { html, useCallback, useEffect, useState } from "../html.js";

export const Badge = ({ kind, children }) => html`<span class="badge ${kind ?? ""}">${children}</span>`;

export function Online({ online, enabled = true }) {
  if (!enabled) return html`<${Badge}>disabled<//>`;
  return online ? html`<${Badge} kind="ok">online<//>` : html`<${Badge} kind="bad">offline<//>`;
}

export function Health({ target }) {
  if (!target.enabled) return html`<${Badge}>disabled<//>`;
  if (!target.online) return html`<${Badge} kind="bad">site offline<//>`;
  if (target.healthy === true) return html`<${Badge} kind="ok">healthy<//>`;
  if (target.healthy === false) return html`<${Badge} kind="bad" title=${target.detail ?? ""}>unhealthy<//>`;
  // No report: the target has no health check, or its edge has not checked it yet.
  return html`<${Badge} kind="ok" title="its site is online; no health report (no check, or none yet)">site online<//>`;
}

const OUTCOME_KIND = { allow: "ok", success: "ok", deny: "bad", failure: "bad", authenticate: "warn" };
export const Outcome = ({ outcome }) => html`<${Badge} kind=${OUTCOME_KIND[outcome]}>${outcome}<//>`;

export const Loading = ({ what = "Loading" }) => html`<p class="loading" role="status">${what}…</p>`;

export const Failed = ({ error }) =>
  html`<div class="notice error" role="alert"><p>${error?.message ?? String(error)}</p></div>`;

/** Load data with `load()` (an async function) when `deps` change; reload() runs it again. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const run = useCallback(async () => {
    try {
      const data = await load();
      setState({ data, error: null, loading: false });
    } catch (error) {
      setState((old) => ({ ...old, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    setState({ data: undefined, error: null, loading: true });
    run();
  }, [run]);
  return { ...state, reload: run, set: (data) => setState((old) => ({ ...old, data: typeof data === "function" ? data(old.data) : data })) };
}

/** Say something to screen readers (the layout's polite live region). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/** A page's heading and, beside it, its main actions. */
export const PageHead = ({ title, children, lead }) => html`<div class="page-head">
  <h1 tabindex="-1" id="page-title">${title}</h1>
  ${children ? html`<div class="page-actions">${children}</div>` : null}
</div>${lead ? html`<p class="lead">${lead}</p>` : null}`;

/** Whether a resource is public or protected, and its own password or PIN. */
export function AccessBadges({ resource }) {
  return html`${resource.public ? html`<${Badge} kind="warn">public<//>` : html`<${Badge} kind="ok">protected<//>`}
    ${resource.has_password ? html` <${Badge}>password<//>` : null}${resource.has_pin ? html` <${Badge}>PIN<//>` : null}`;
}

/** Draw the component again every `ms` milliseconds (for "3 minutes ago" that must not go stale). */
export function useTick(ms = 30_000) {
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((n) => n + 1), ms);
    return () => clearInterval(timer);
  }, [ms]);
}
