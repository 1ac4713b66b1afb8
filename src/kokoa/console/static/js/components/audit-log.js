// The audit log: who changed what, when, from where; each entry's before and after on demand.
import { html, useEffect, useState } from "../html.js";
import { get, org as orgPath, query } from "../api.js";
import { useDirectory } from "../directory.js";
import { isoFromLocal, when } from "../format.js";
import { Field, Form, useForm } from "./form.js";
import { Failed, Loading } from "./status.js";
import { TableWrap } from "./table-wrap.js";

const PAGE = 50;

function actorName(actor, people) {
  if (actor.startsWith("user:")) return people.name(actor.slice(5));
  if (actor.startsWith("key:")) return `API key ${actor.slice(4)}…`;
  return actor;
}

function Entry({ entry, people }) {
  const changed = entry.before != null || entry.after != null;
  return html`<tr>
    <td><time datetime=${entry.at}>${when(entry.at)}</time></td>
    <td>${actorName(entry.actor, people)}</td>
    <td><code>${entry.action}</code></td>
    <td class="hide-narrow">${entry.object_kind ? html`${entry.object_kind} <code class="small muted">${entry.object_id}</code>` : "—"}</td>
    <td class="hide-narrow"><code>${entry.source_address ?? ""}</code></td>
    <td>${changed ? html`<details><summary>Changes<span class="visually-hidden"> of ${entry.action} at ${when(entry.at)}</span></summary>
      ${entry.before != null ? html`<p class="small">Before</p><pre class="json" tabindex="0" aria-label="Before">${JSON.stringify(entry.before, null, 2)}</pre>` : null}
      ${entry.after != null ? html`<p class="small">After</p><pre class="json" tabindex="0" aria-label="After">${JSON.stringify(entry.after, null, 2)}</pre>` : null}
    </details>` : null}</td>
  </tr>`;
}

export function AuditLog({ org }) {
  const people = useDirectory(org.id);
  const form = useForm({ action: "", actor: "", since: "", until: "" });
  const [filters, setFilters] = useState({});
  const [rows, setRows] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);

  async function load(f, after = null) {
    const page = await get(orgPath(org.id, `/audit${query({ ...f, limit: PAGE, cursor: after })}`));
    setRows((old) => (after ? [...(old ?? []), ...page.items] : page.items));
    setCursor(page.next_cursor);
  }
  useEffect(() => {
    load({}).catch(setError);
  }, [org.id]);
  async function apply(v) {
    const f = { action: v.action.trim(), actor: v.actor.trim(), since: isoFromLocal(v.since), until: isoFromLocal(v.until) };
    await load(f);
    setFilters(f);
    setError(null);
  }
  return html`<section aria-labelledby="audit-title"><h2 id="audit-title" class="visually-hidden">Audit log</h2>
    <details class="panel filters"><summary>Filters</summary>
      <${Form} form=${form} onSubmit=${apply} submit="Apply filters" label="Filter the audit log">
        <div class="grid-2">
          <${Field} form=${form} name="action" label="Action" hint="such as site.create, or site.* for every site action" autocomplete="off" />
          <${Field} form=${form} name="actor" label="Actor" hint="such as user:user_… or key:kk_…" autocomplete="off" />
          <${Field} form=${form} name="since" label="From" type="datetime-local" />
          <${Field} form=${form} name="until" label="Until" type="datetime-local" />
        </div>
      <//>
    </details>
    ${error ? html`<${Failed} error=${error} />` : null}
    ${rows === null ? html`<${Loading} />` : rows.length === 0 ? html`<p class="empty">No entry matches.</p>` : html`<${TableWrap} label="Audit log"><table class="audit-log">
      <caption class="visually-hidden">Audit log, newest first</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col" class="hide-narrow">Object</th><th scope="col" class="hide-narrow">From</th><th scope="col">Details</th></tr></thead>
      <tbody>${rows.map((entry) => html`<${Entry} key=${entry.id} entry=${entry} people=${people} />`)}</tbody>
    </table><//>`}
    ${cursor ? html`<div class="actions"><button type="button" class="secondary" onClick=${() => load(filters, cursor).catch(setError)}>Load older entries</button></div>` : null}
  </section>`;
}
