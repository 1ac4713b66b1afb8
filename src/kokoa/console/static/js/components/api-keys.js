// The organization's API keys: create one (the key shown once), see when each was last used, revoke.
import { html, useState } from "../html.js";
import { all, del, org as orgPath, post } from "../api.js";
import { isoFromLocal, when } from "../format.js";
import { Field, Form, useForm } from "./form.js";
import { ShownOnce } from "./copy.js";
import { useConfirm } from "./dialog.js";
import { Badge, Failed, Loading, announce, useLoad } from "./status.js";
import { TableWrap } from "./table-wrap.js";

const SCOPES = [["read", "Read (GET only)"], ["write", "Read and write"]];

export function ApiKeys({ org, people }) {
  const base = orgPath(org.id, "/api-keys");
  const keys = useLoad(() => all(base), [org.id]);
  const form = useForm({ name: "", scopes: "read", expires_at: "", user_id: "" });
  const [made, setMade] = useState(null);
  const [error, setError] = useState(null);
  const [dialog, ask] = useConfirm();

  async function create(v) {
    const answer = await post(base, {
      name: v.name.trim(),
      scopes: [v.scopes],
      expires_at: isoFromLocal(v.expires_at) || null,
      user_id: v.user_id || undefined,
    });
    setMade(answer);
    form.setValues({ name: "", scopes: "read", expires_at: "", user_id: "" });
    announce(`API key ${answer.api_key.name} created: copy it now.`);
    keys.reload();
  }
  async function revoke(key) {
    if (!(await ask({ title: `Revoke the API key ${key.name}?`, confirm: "Revoke key",
      body: html`<p>Programs using <code>${key.prefix}…</code> are refused from now on.</p>` }))) return;
    setError(null);
    try {
      await del(`${base}/${key.id}`);
      announce(`API key ${key.name} revoked.`);
    } catch (e) {
      setError(e);
    }
    keys.reload();
  }
  const active = (keys.data ?? []).filter((k) => !k.revoked_at);
  return html`<section class="card" aria-labelledby="keys-title"><h2 id="keys-title">API keys</h2>
    <p class="hint">For programs and scripts: send <code>Authorization: Bearer KEY</code> to the API.</p>
    ${keys.loading ? html`<${Loading} />` : null}
    ${keys.error || error ? html`<${Failed} error=${keys.error ?? error} />` : null}
    ${made ? html`<${ShownOnce} title=${`API key ${made.api_key.name}`} text=${made.key} what="the API key">
      <button type="button" class="secondary" onClick=${() => setMade(null)}>Done</button>
    <//>` : null}
    ${keys.data && !active.length ? html`<p class="empty">No API key.</p>` : null}
    ${active.length ? html`<${TableWrap} label="API keys"><table class="stack">
      <thead><tr><th scope="col">Key</th><th scope="col">Scopes</th><th scope="col" class="hide-narrow">Acts for</th><th scope="col" class="hide-narrow">Last used</th><th scope="col" class="hide-narrow">Expires</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${active.map((k) => html`<tr data-key=${k.id}>
        <th scope="row">${k.name} <code class="small muted">${k.prefix}…</code></th>
        <td>${k.scopes.map((s) => html`<${Badge}>${s}<//> `)}</td>
        <td class="hide-narrow">${k.user_id ? people.name(k.user_id) : html`<span class="muted">nobody</span>`}</td>
        <td class="hide-narrow">${k.last_used_at ? when(k.last_used_at) : "never"}</td>
        <td class="hide-narrow">${k.expires_at ? when(k.expires_at) : "never"}</td>
        <td class="actions-cell"><button type="button" class="danger" onClick=${() => revoke(k)}>Revoke<span class="visually-hidden"> ${k.name}</span></button></td>
      </tr>`)}</tbody></table><//>` : null}
    <h3>Create an API key</h3>
    <${Form} form=${form} onSubmit=${create} submit="Create key" label="Create an API key">
      <div class="grid-2">
        <${Field} form=${form} name="name" label="Key name" required hint="what uses it, such as backup-script" autocomplete="off" />
        <${Field} form=${form} name="scopes" label="Scope" type="select" options=${SCOPES} />
        <${Field} form=${form} name="expires_at" label="Key expires" type="datetime-local" hint="empty: never" />
        <${Field} form=${form} name="user_id" label="Acts for" type="select" hint="a member whose grants it carries to protected resources"
          options=${[["", "Nobody (the API only)"], ...people.members.map((m) => [m.user_id, people.name(m.user_id)])]} />
      </div>
    <//>
    ${dialog}
  </section>`;
}
