// One resource: its settings (edit, disable, delete) and targets on the first tab, its access settings
// on the second; the inspector is a link away.
import { html, useEffect, useState } from "../html.js";
import { all, del, get, org as orgPath, patch } from "../api.js";
import { go, href } from "../router.js";
import { address } from "../format.js";
import { Field, Form, useForm } from "../components/form.js";
import { useConfirm } from "../components/dialog.js";
import { Targets } from "../components/targets.js";
import { AccessBadges, Badge, Failed, Loading, PageHead, announce, useLoad } from "../components/status.js";
import { Access } from "./access.js";

const LB = [["round_robin", "Round robin"], ["least_connections", "Least connections"]];

function settingsOf(r) {
  const common = { name: r.name, enabled: r.enabled };
  if (r.kind !== "http") return { ...common, public_port: r.public_port };
  return { ...common, hostname: r.hostname, path_prefix: r.path_prefix, lb_method: r.lb_method, sticky: r.sticky,
    redirect_https: r.redirect_https, hsts_max_age: r.hsts_max_age };
}

function Settings({ org, resource, saved }) {
  const form = useForm(settingsOf(resource));
  useEffect(() => form.setValues(settingsOf(resource)), [resource.updated_at]);
  async function save(values) {
    const body = { ...values };
    if (typeof body.name === "string") body.name = body.name.trim();
    saved(await patch(orgPath(org.id, `/resources/${resource.id}`), body));
    announce("Saved.");
  }
  const http = resource.kind === "http";
  return html`<section class="card" aria-labelledby="settings-title"><h2 id="settings-title">Settings</h2>
    <${Form} form=${form} onSubmit=${save} label="Settings">
      <${Field} form=${form} name="name" label="Name" required />
      ${http ? html`<div class="grid-2">
          <${Field} form=${form} name="hostname" label="Hostname" required />
          <${Field} form=${form} name="path_prefix" label="Path prefix" />
          <${Field} form=${form} name="lb_method" label="Load balancing" type="select" options=${LB} hint="how requests are spread over the targets" />
          <${Field} form=${form} name="hsts_max_age" label="HSTS max-age (seconds)" type="number" hint="0: no Strict-Transport-Security header" />
        </div>
        <${Field} form=${form} name="sticky" label="Sticky sessions (a cookie keeps each client on one target)" type="checkbox" />
        <${Field} form=${form} name="redirect_https" label="Redirect plain HTTP to HTTPS" type="checkbox" />`
        : html`<${Field} form=${form} name="public_port" label="Public port" type="number" required />`}
      <${Field} form=${form} name="enabled" label="Enabled" type="checkbox" hint="a disabled resource is not served" />
    <//>
  </section>`;
}

function Tabs({ org, resource, tab }) {
  const tabs = [[null, "Settings and targets"], ["access", "Access"]];
  return html`<nav aria-label="Resource"><ul class="tabs">
    ${tabs.map(([name, label]) => html`<li><a href=${href(org.id, "resources", resource.id, name)} aria-current=${tab === name ? "page" : undefined}>${label}</a></li>`)}
    ${resource.kind === "http" ? html`<li><a href=${href(org.id, "inspector", resource.id)}>Inspector</a></li>` : null}
  </ul></nav>`;
}

export function ResourcePage({ org, id, tab }) {
  const loaded = useLoad(() => get(orgPath(org.id, `/resources/${id}`)), [org.id, id]);
  const [dialog, ask] = useConfirm();
  const [error, setError] = useState(null);
  const resource = loaded.data;
  if (loaded.loading) return html`<${Loading} />`;
  if (loaded.error) return html`<h1 tabindex="-1" id="page-title">Resource</h1><${Failed} error=${loaded.error} />`;

  async function remove() {
    setError(null);
    try {
      const lists = ["targets", "grants", "rules"].map((what) => all(orgPath(org.id, `/resources/${id}/${what}`)));
      const [targets, grants, rules] = await Promise.all(lists);
      const yes = await ask({
        title: `Delete ${resource.name}?`,
        confirm: "Delete resource",
        body: html`<p><code>${address(resource)}</code> stops answering at once.</p><p>Deleted with it: ${targets.length} target(s), ${grants.length} grant(s), ${rules.length} rule(s) and its share links.</p>`,
      });
      if (!yes) return;
      await del(orgPath(org.id, `/resources/${id}`));
      announce(`Resource ${resource.name} deleted.`);
      go(org.id, "resources");
    } catch (e) {
      setError(e);
    }
  }

  return html`<p class="crumbs"><a href=${href(org.id, "resources")}>Resources</a> /</p>
    <${PageHead} title=${resource.name}>
      <button type="button" class="danger" onClick=${remove}>Delete resource</button>
    <//>
    <p class="lead"><${Badge}>${resource.kind.toUpperCase()}<//> <code>${address(resource)}</code> <${AccessBadges} resource=${resource} />${resource.enabled ? null : html` <${Badge}>disabled<//>`}</p>
    ${error ? html`<${Failed} error=${error} />` : null}
    <${Tabs} org=${org} resource=${resource} tab=${tab} />
    ${tab === "access"
      ? html`<${Access} org=${org} resource=${resource} saved=${loaded.set} />`
      : html`<${Settings} org=${org} resource=${resource} saved=${loaded.set} />
        <${Targets} org=${org} resource=${resource} />`}
    ${dialog}`;
}
