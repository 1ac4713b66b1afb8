// A resource's targets: where its traffic goes (a host and port, seen from a site's edge), with their
// health live from the organization's events; add, edit, disable and delete.
import { html, useState } from "../html.js";
import { all, del, org as orgPath, patch, post } from "../api.js";
import { useOverview } from "../overview.js";
import { Field, Form, useForm } from "./form.js";
import { useConfirm } from "./dialog.js";
import { Failed, Health, Loading, announce, useLoad } from "./status.js";
import { TableWrap } from "./table-wrap.js";

const SCHEMES = { http: ["http", "https"], tcp: ["tcp"], udp: ["udp"] };

function valuesOf(target, kind) {
  const check = target?.health_check ?? {};
  return {
    site_id: target?.site_id ?? "",
    host: target?.host ?? "",
    port: target?.port ?? "",
    scheme: target?.scheme ?? SCHEMES[kind][0],
    weight: target?.weight ?? 100,
    enabled: target?.enabled ?? true,
    "health_check.enabled": check.enabled ?? false,
    "health_check.path": check.path ?? "",
    "health_check.interval": check.interval ?? 10,
    "health_check.expected_status": check.expected_status ?? "200-399",
  };
}

function bodyOf(v, kind) {
  const body = { site_id: v.site_id || undefined, host: v.host.trim(), port: v.port === "" ? undefined : v.port, weight: v.weight, enabled: v.enabled };
  if (kind === "http") body.scheme = v.scheme;
  body.health_check = { enabled: v["health_check.enabled"], interval: v["health_check.interval"] };
  if (kind === "http") {
    body.health_check.path = v["health_check.path"] || null;
    body.health_check.expected_status = v["health_check.expected_status"];
  }
  return body;
}

function TargetForm({ org, resource, target, sites, done, label }) {
  const form = useForm(valuesOf(target, resource.kind));
  const base = orgPath(org.id, `/resources/${resource.id}/targets`);
  async function save(values) {
    const body = bodyOf(values, resource.kind);
    const made = target ? await patch(`${base}/${target.id}`, body) : await post(base, body);
    if (!target) form.setValues(valuesOf(null, resource.kind));
    announce(target ? "Target saved." : "Target added.");
    done(made);
  }
  const http = resource.kind === "http";
  return html`<${Form} form=${form} onSubmit=${save} submit=${target ? "Save target" : "Add target"} label=${label}
      secondary=${target ? html`<button type="button" class="secondary" onClick=${() => done(null)}>Cancel</button>` : null}>
    <div class="grid-2">
      <${Field} form=${form} name="site_id" label="Site" type="select" options=${[["", "Choose a site"], ...sites.map((s) => [s.id, s.name])]} required />
      <${Field} form=${form} name="host" label="Host" required hint="an address or name, as the site's edge sees it" />
      <${Field} form=${form} name="port" label="Port" type="number" required />
      ${http ? html`<${Field} form=${form} name="scheme" label="Scheme" type="select" options=${SCHEMES.http.map((s) => [s, s])} />` : null}
      <${Field} form=${form} name="weight" label="Weight" type="number" hint="its share of the requests (0 to 1000)" />
    </div>
    <${Field} form=${form} name="enabled" label="Enabled" type="checkbox" />
    <details class="panel"><summary>Health check</summary>
      <${Field} form=${form} name="health_check.enabled" label="Check this target's health" type="checkbox" hint="the site's edge checks it; an unhealthy target gets no traffic" />
      <div class="grid-2">
        ${http ? html`<${Field} form=${form} name="health_check.path" label="Health check path" hint="an HTTP GET of this path; empty: a TCP connect" />` : null}
        <${Field} form=${form} name="health_check.interval" label="Every (seconds)" type="number" />
        ${http ? html`<${Field} form=${form} name="health_check.expected_status" label="Healthy statuses" hint="such as 200-399 or 200,204" />` : null}
      </div>
    </details>
  <//>`;
}

export function Targets({ org, resource }) {
  const base = orgPath(org.id, `/resources/${resource.id}/targets`);
  const targets = useLoad(() => all(base), [resource.id]);
  const sites = useLoad(() => all(orgPath(org.id, "/sites")), [org.id]);
  const { overview } = useOverview(org.id);
  const [editing, setEditing] = useState(null);
  const [error, setError] = useState(null);
  const [dialog, ask] = useConfirm();
  const live = Object.fromEntries((overview?.resources.find((r) => r.id === resource.id)?.targets ?? []).map((t) => [t.id, t]));
  const siteName = Object.fromEntries((sites.data ?? []).map((s) => [s.id, s.name]));
  const where = (t) => `${t.scheme}://${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`;

  async function act(action) {
    setError(null);
    try {
      await action();
      targets.reload();
    } catch (e) {
      setError(e);
    }
  }
  const toggle = (t) => act(async () => {
    await patch(`${base}/${t.id}`, { enabled: !t.enabled });
    announce(`Target ${where(t)} ${t.enabled ? "disabled" : "enabled"}.`);
  });
  const remove = (t) => act(async () => {
    const last = targets.data.filter((x) => x.enabled).length === 1 && t.enabled;
    if (!(await ask({ title: `Delete the target ${where(t)}?`, confirm: "Delete target",
      body: html`<p>${last ? `It is the only enabled target: ${resource.name} stops answering.` : "Its share of the traffic goes to the other targets."}</p>` }))) return;
    await del(`${base}/${t.id}`);
    announce(`Target ${where(t)} deleted.`);
  });

  return html`<section class="card" aria-labelledby="targets-title"><h2 id="targets-title">Targets</h2>
    ${targets.loading || sites.loading ? html`<${Loading} />` : null}
    ${targets.error || error ? html`<${Failed} error=${targets.error ?? error} />` : null}
    ${targets.data && !targets.data.length ? html`<p class="empty">No target: the resource has nowhere to send traffic.</p>` : null}
    ${targets.data?.length ? html`<${TableWrap} label="Targets"><table class="stack">
      <thead><tr><th scope="col">Target</th><th scope="col">Site</th><th scope="col" class="num hide-narrow">Weight</th><th scope="col">Health</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${targets.data.map((t) => html`<tr data-target=${t.id}>
        <th scope="row"><code>${where(t)}</code></th>
        <td>${siteName[t.site_id] ?? t.site_id}</td>
        <td class="num hide-narrow">${t.weight}</td>
        <td><${Health} target=${live[t.id] ?? { ...t, online: false }} /></td>
        <td class="actions-cell">
          <button type="button" class="secondary" onClick=${() => setEditing(t.id)}>Edit<span class="visually-hidden"> ${where(t)}</span></button>
          <button type="button" class="secondary" onClick=${() => toggle(t)}>${t.enabled ? "Disable" : "Enable"}<span class="visually-hidden"> ${where(t)}</span></button>
          <button type="button" class="danger" onClick=${() => remove(t)}>Delete<span class="visually-hidden"> ${where(t)}</span></button>
        </td>
      </tr>
      ${editing === t.id ? html`<tr><td colspan="5"><${TargetForm} org=${org} resource=${resource} target=${t} sites=${sites.data ?? []} label=${`Edit the target ${where(t)}`}
        done=${(saved) => { setEditing(null); if (saved) targets.reload(); }} /></td></tr>` : null}`)}</tbody>
    </table><//>` : null}
    <h3>Add a target</h3>
    ${sites.data ? html`<${TargetForm} org=${org} resource=${resource} sites=${sites.data} label="Add a target" done=${() => targets.reload()} />` : null}
    ${dialog}
  </section>`;
}
