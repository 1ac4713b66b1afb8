// Share links of an HTTP resource: anyone holding one is let in to this resource alone, until it
// expires, is used up or is revoked. The link itself is shown once.
import { html, useState } from "../html.js";
import { all, del, org as orgPath, post } from "../api.js";
import { isoFromLocal, when } from "../format.js";
import { Field, Form, useForm } from "./form.js";
import { ShownOnce } from "./copy.js";
import { Badge, Failed, Loading, announce, useLoad } from "./status.js";
import { TableWrap } from "./table-wrap.js";

/** https://<hostname>[:port] of an HTTP resource (the login host's HTTPS port is the resources' too). */
export function resourceOrigin(resource) {
  if (!resource.hostname || resource.hostname.startsWith("*")) return null;
  return `https://${resource.hostname}${location.port ? `:${location.port}` : ""}`;
}

function state(link) {
  if (link.revoked_at) return html`<${Badge} kind="bad">revoked<//>`;
  if (link.expires_at && new Date(link.expires_at) <= new Date()) return html`<${Badge}>expired<//>`;
  if (link.max_uses != null && link.uses >= link.max_uses) return html`<${Badge}>used up<//>`;
  return html`<${Badge} kind="ok">active<//>`;
}

export function ShareLinks({ org, resource }) {
  const base = orgPath(org.id, `/resources/${resource.id}/share-links`);
  const links = useLoad(() => all(base), [resource.id]);
  const form = useForm({ name: "", expires_at: "", max_uses: "" });
  const [made, setMade] = useState(null);
  const [error, setError] = useState(null);
  const origin = resourceOrigin(resource);

  async function create(v) {
    const answer = await post(base, {
      name: v.name.trim(),
      expires_at: isoFromLocal(v.expires_at) || null,
      max_uses: v.max_uses === "" ? null : v.max_uses,
    });
    setMade(answer);
    form.setValues({ name: "", expires_at: "", max_uses: "" });
    announce(`Share link ${answer.share_link.name} created: copy it now.`);
    links.reload();
  }
  async function act(action, message) {
    setError(null);
    try {
      await action();
      announce(message);
      links.reload();
    } catch (e) {
      setError(e);
    }
  }

  return html`<section class="card" aria-labelledby="links-title"><h2 id="links-title">Share links</h2>
    <p class="hint">A link lets anyone who has it in to this resource alone, without an account.</p>
    ${links.loading ? html`<${Loading} />` : null}
    ${links.error || error ? html`<${Failed} error=${links.error ?? error} />` : null}
    ${made ? html`<${ShownOnce} title=${`Share link ${made.share_link.name}`} what="the share link"
        text=${origin ? `${origin}/.kokoa/share/${made.token}` : `/.kokoa/share/${made.token}`}>
      <button type="button" class="secondary" onClick=${() => setMade(null)}>Done</button>
    <//>` : null}
    ${links.data?.length ? html`<${TableWrap} label="Share links"><table class="stack">
      <thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col" class="num">Uses</th><th scope="col" class="hide-narrow">Expires</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${links.data.map((l) => html`<tr data-link=${l.id}>
        <th scope="row">${l.name} <code class="small muted">${l.prefix}…</code></th>
        <td>${state(l)}</td>
        <td class="num">${l.uses}${l.max_uses != null ? ` of ${l.max_uses}` : ""}</td>
        <td class="hide-narrow">${l.expires_at ? when(l.expires_at) : "never"}</td>
        <td class="actions-cell">
          ${l.revoked_at ? null : html`<button type="button" class="secondary" onClick=${() => act(() => post(`${base}/${l.id}/revoke`), `Share link ${l.name} revoked.`)}>Revoke<span class="visually-hidden"> ${l.name}</span></button>`}
          <button type="button" class="danger" onClick=${() => act(() => del(`${base}/${l.id}`), `Share link ${l.name} deleted.`)}>Delete<span class="visually-hidden"> ${l.name}</span></button>
        </td>
      </tr>`)}</tbody></table><//>` : links.data ? html`<p class="empty">No share link.</p>` : null}
    <h3>Create a share link</h3>
    <${Form} form=${form} onSubmit=${create} submit="Create link" label="Create a share link">
      <div class="grid-2">
        <${Field} form=${form} name="name" label="Link name" required hint="who it is for, such as auditor" autocomplete="off" />
        <${Field} form=${form} name="expires_at" label="Expires" type="datetime-local" hint="empty: never" />
        <${Field} form=${form} name="max_uses" label="Uses allowed" type="number" min="1" hint="empty: no limit" />
      </div>
    <//>
  </section>`;
}
