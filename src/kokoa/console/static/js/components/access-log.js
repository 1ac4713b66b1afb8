// The access log: every decision and sign-in, newest first, with filters and a live tail (the
// organization's `access` events, shown as they happen when they match the filters).
import { html, useEffect, useRef, useState } from "../html.js";
import { all, get, org as orgPath, query } from "../api.js";
import { useEvents } from "../events.js";
import { useDirectory } from "../directory.js";
import { isoFromLocal, time, when } from "../format.js";
import { Field, Form, useForm } from "./form.js";
import { Badge, Failed, Loading, Outcome, useLoad } from "./status.js";
import { TableWrap } from "./table-wrap.js";

const KINDS = ["request", "connect", "signin", "signout", "share"];
const OUTCOMES = ["allow", "deny", "authenticate", "success", "failure"];
const PAGE = 50;
const MAX_LIVE = 500;

function filtersOf(v) {
  return {
    resource_id: v.resource_id, user_id: v.user_id, subject: v.subject.trim(), kind: v.kind, outcome: v.outcome,
    since: isoFromLocal(v.since), until: isoFromLocal(v.until),
  };
}

/** Whether a live row passes the filters (as the API would filter it). */
function matches(entry, f) {
  if (f.resource_id && entry.resource_id !== f.resource_id) return false;
  if (f.user_id && entry.user_id !== f.user_id) return false;
  if (f.subject && entry.subject !== f.subject) return false;
  if (f.kind && entry.kind !== f.kind) return false;
  if (f.outcome && entry.outcome !== f.outcome) return false;
  if (f.until) return false; // a window that ends: nothing live belongs to it
  return true;
}

function Row({ entry, resourceName, people }) {
  const who = entry.subject ?? (entry.user_id ? people.name(entry.user_id) : null);
  const request = entry.method ? `${entry.method} ${entry.host ?? ""}${entry.path ?? ""}` : entry.host ?? "";
  return html`<tr class=${entry.live ? "live" : ""}>
    <td><time datetime=${entry.at} title=${when(entry.at)}>${time(entry.at)}</time></td>
    <td><${Outcome} outcome=${entry.outcome} />${entry.count > 1 ? html` <span class="muted small">×${entry.count}</span>` : null}</td>
    <td>${entry.kind}</td>
    <td>${entry.resource_id ? resourceName(entry.resource_id) : html`<span class="muted">—</span>`}</td>
    <td>${who ?? html`<span class="muted">anonymous</span>`}</td>
    <td class="hide-narrow"><code>${request}</code></td>
    <td class="hide-narrow"><code>${entry.client_address ?? ""}</code></td>
    <td class="hide-narrow small">${entry.reason}</td>
  </tr>`;
}

export function AccessLog({ org }) {
  const resources = useLoad(() => all(orgPath(org.id, "/resources")), [org.id]);
  const people = useDirectory(org.id);
  const form = useForm({ resource_id: "", user_id: "", subject: "", kind: "", outcome: "", since: "", until: "" });
  const [filters, setFilters] = useState(filtersOf(form.values));
  const [rows, setRows] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [tail, setTail] = useState(false);
  const [error, setError] = useState(null);
  const names = Object.fromEntries((resources.data ?? []).map((r) => [r.id, r.name]));
  const resourceName = (id) => names[id] ?? id;

  async function load(f, after = null) {
    const page = await get(orgPath(org.id, `/access-log${query({ ...f, limit: PAGE, cursor: after })}`));
    setRows((old) => (after ? [...(old ?? []), ...page.items] : page.items));
    setCursor(page.next_cursor);
  }
  useEffect(() => {
    load(filters).catch(setError);
  }, [org.id]);
  const arrived = useRef(0);
  const state = useEvents(tail ? orgPath(org.id, "/events") : null, {
    access: (entry) => {
      if (!matches(entry, filters)) return;
      arrived.current += 1;
      setRows((old) => [{ ...entry, live: `live-${arrived.current}` }, ...(old ?? [])].slice(0, MAX_LIVE));
    },
  });

  async function apply(v) {
    const f = filtersOf(v);
    // The API checks the filters (a bad time is refused next to its field).
    await load(f);
    setFilters(f);
    setError(null);
  }
  const options = (list, blank) => [["", blank], ...list.map((x) => [x, x])];
  return html`<section aria-labelledby="access-title"><h2 id="access-title" class="visually-hidden">Access log</h2>
    <details class="panel filters" open><summary>Filters</summary>
      <${Form} form=${form} onSubmit=${apply} submit="Apply filters" label="Filter the access log">
        <div class="grid-2">
          <${Field} form=${form} name="resource_id" label="Resource" type="select" options=${[["", "Any resource"], ...(resources.data ?? []).map((r) => [r.id, r.name])]} />
          <${Field} form=${form} name="user_id" label="Member" type="select" options=${[["", "Anyone"], ...people.members.map((m) => [m.user_id, people.name(m.user_id)])]} />
          <${Field} form=${form} name="subject" label="Email or share link" hint="as the log names them" autocomplete="off" />
          <${Field} form=${form} name="outcome" label="Outcome" type="select" options=${options(OUTCOMES, "Any outcome")} />
          <${Field} form=${form} name="kind" label="Kind" type="select" options=${options(KINDS, "Any kind")} />
          <${Field} form=${form} name="since" label="From" type="datetime-local" />
          <${Field} form=${form} name="until" label="Until" type="datetime-local" />
        </div>
      <//>
    </details>
    <div class="actions">
      <div class="field check"><input type="checkbox" id="live-tail" checked=${tail} onChange=${(e) => setTail(e.target.checked)} />
        <label for="live-tail">Live tail: show new entries as they happen</label></div>
      ${tail ? html`<${Badge} kind=${state === "live" ? "ok" : "warn"}>${state === "live" ? "live" : "connecting…"}<//>` : null}
    </div>
    ${error ? html`<${Failed} error=${error} />` : null}
    ${rows === null ? html`<${Loading} />` : rows.length === 0 ? html`<p class="empty">No entry matches.</p>` : html`<${TableWrap} label="Access log"><table class="access-log">
      <caption class="visually-hidden">Access log, newest first</caption>
      <thead><tr><th scope="col">Time</th><th scope="col">Outcome</th><th scope="col">Kind</th><th scope="col">Resource</th><th scope="col">Who</th>
        <th scope="col" class="hide-narrow">Request</th><th scope="col" class="hide-narrow">From</th><th scope="col" class="hide-narrow">Why</th></tr></thead>
      <tbody>${rows.map((entry) => html`<${Row} key=${entry.live || entry.id} entry=${entry} resourceName=${resourceName} people=${people} />`)}</tbody>
    </table><//>`}
    ${cursor ? html`<div class="actions"><button type="button" class="secondary" onClick=${() => load(filters, cursor).catch(setError)}>Load older entries</button></div>` : null}
  </section>`;
}
