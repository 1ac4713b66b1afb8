// A new resource (HTTP, TCP or UDP) with its first target, in one form.
import { html } from "../html.js";
import { ApiError, all, del, org as orgPath, post } from "../api.js";
import { go, href } from "../router.js";
import { Field, Form, Radios, useForm } from "../components/form.js";
import { Failed, PageHead, announce, useLoad } from "../components/status.js";

const SCHEMES = { http: [["http", "http"], ["https", "https"]], tcp: [["tcp", "tcp"]], udp: [["udp", "udp"]] };

/** The resource's body from the form's values (only the fields of its kind). */
function resourceBody(v) {
  const body = { name: v.name.trim(), kind: v.kind };
  if (v.kind === "http") {
    body.hostname = v.hostname.trim();
    if (v.path_prefix) body.path_prefix = v.path_prefix.trim();
    body.public = v.access === "public";
  } else {
    body.public_port = v.public_port === "" ? undefined : v.public_port;
    body.public = v.access === "public";
  }
  return body;
}

export function NewResource({ org }) {
  const sites = useLoad(() => all(orgPath(org.id, "/sites")), [org.id]);
  const form = useForm({ kind: "http", name: "", hostname: "", path_prefix: "/", public_port: "", access: "protected",
    "target.site_id": "", "target.host": "127.0.0.1", "target.port": "", "target.scheme": "http" });
  const v = form.values;
  const siteOptions = [["", "Choose a site"], ...(sites.data ?? []).map((s) => [s.id, s.name])];

  async function create(values) {
    // The resource, then its target; if the target is refused, the resource goes too (nothing half-made).
    const resource = await post(orgPath(org.id, "/resources"), resourceBody(values));
    try {
      await post(orgPath(org.id, `/resources/${resource.id}/targets`), {
        site_id: values["target.site_id"] || undefined,
        host: values["target.host"].trim(),
        port: values["target.port"] === "" ? undefined : values["target.port"],
        scheme: values["target.scheme"],
      });
    } catch (error) {
      await del(orgPath(org.id, `/resources/${resource.id}`)).catch(() => null);
      if (error instanceof ApiError) {
        const fields = Object.fromEntries(Object.entries(error.fields).map(([k, m]) => [`target.${k}`, m]));
        error.fields = fields;
      }
      throw error;
    }
    announce(`Resource ${resource.name} created.`);
    go(org.id, "resources", resource.id);
  }

  const kindChanged = (kind) => {
    form.setValues((old) => ({ ...old, kind, "target.scheme": SCHEMES[kind][0][0], access: kind === "http" ? "protected" : "public" }));
  };
  return html`<p class="crumbs"><a href=${href(org.id, "resources")}>Resources</a> /</p>
    <${PageHead} title="Add a resource" />
    ${sites.error ? html`<${Failed} error=${sites.error} />` : null}
    ${sites.data && !sites.data.length ? html`<p class="notice warn">A resource's targets are reached through a site: <a href=${href(org.id, "sites")}>add a site</a> first.</p>` : null}
    <${Form} form=${form} onSubmit=${create} submit="Create resource" label="Add a resource">
      <fieldset class="radios"><legend>Kind</legend>
        ${[["http", "HTTP", "a web application, by hostname (and path)"], ["tcp", "TCP", "any TCP service, on a port of the gateway"], ["udp", "UDP", "datagrams, on a port of the gateway"]].map(([kind, label, detail]) => html`<div class="field check">
          <input type="radio" id=${`kind-${kind}`} name="kind" checked=${v.kind === kind} onChange=${() => kindChanged(kind)} />
          <label for=${`kind-${kind}`}>${label}</label><p class="hint">${detail}</p></div>`)}
      </fieldset>
      <${Field} form=${form} name="name" label="Name" required autocomplete="off" />
      ${v.kind === "http" ? html`<div class="grid-2">
          <${Field} form=${form} name="hostname" label="Hostname" required hint="such as app.example.com, or *.example.com" autocomplete="off" />
          <${Field} form=${form} name="path_prefix" label="Path prefix" hint="/ for the whole site" />
        </div>`
        : html`<${Field} form=${form} name="public_port" label="Public port" type="number" required hint="the gateway's port that clients connect to" />`}
      <${Radios} form=${form} name="access" legend="Who may reach it" options=${[
        ["protected", "Protected", "people sign in, and need a grant (set on its access page)"],
        ["public", "Public", "anyone, without signing in (its rules still apply)"],
      ]} />
      <fieldset><legend>Its first target</legend>
        <div class="grid-2">
          <${Field} form=${form} name="target.site_id" label="Site" type="select" options=${siteOptions} required hint="whose edge reaches the target" />
          <${Field} form=${form} name="target.host" label="Target host" required hint="as the site's edge sees it" />
          <${Field} form=${form} name="target.port" label="Target port" type="number" required />
          ${v.kind === "http" ? html`<${Field} form=${form} name="target.scheme" label="Target scheme" type="select" options=${SCHEMES.http} />` : null}
        </div>
      </fieldset>
    <//>`;
}
