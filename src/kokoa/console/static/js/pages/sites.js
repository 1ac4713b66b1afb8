// Sites: add one (its secret and edge commands shown once), rotate its secret, disable, delete
// (naming the targets it takes down first). Online state is live from the organization's events.
import { html, useState } from "../html.js";
import { all, del, get, org as orgPath, patch, post } from "../api.js";
import { useOverview } from "../overview.js";
import { ago, when } from "../format.js";
import { Field, Form, useForm } from "../components/form.js";
import { ShownOnce } from "../components/copy.js";
import { useConfirm } from "../components/dialog.js";
import { EdgeCommands, EdgeSettings, useEdgeSettings } from "../components/edge.js";
import { Failed, Loading, Online, PageHead, announce, useLoad, useTick } from "../components/status.js";
import { LiveState, Tunnels } from "./dashboard.js";
import { TableWrap } from "../components/table-wrap.js";

const GRACE = [
  [0, "none: the old secret stops now"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [604800, "7 days"],
];

function AddSite({ org, onCreated }) {
  const form = useForm({ name: "" });
  async function create(values) {
    const made = await post(orgPath(org.id, "/sites"), { name: values.name.trim() });
    form.setValues({ name: "" });
    onCreated(made, "created");
  }
  return html`<section class="card" aria-labelledby="add-site"><h2 id="add-site">Add a site</h2>
    <p class="hint">A site is one private network with one edge next to its services.</p>
    <${Form} form=${form} onSubmit=${create} submit="Add site" label="Add a site">
      <${Field} form=${form} name="name" label="Name" required hint="such as home or office" autocomplete="off" />
    <//>
  </section>`;
}

/** What deleting a site takes down: the targets it carries, and the resources left with none. */
function takenDown(overview, siteId) {
  const lines = [];
  for (const resource of overview?.resources ?? []) {
    const here = resource.targets.filter((t) => t.site_id === siteId);
    if (!here.length) continue;
    const orphan = here.length === resource.targets.length;
    lines.push(html`<li><strong>${resource.name}</strong>: ${here.map((t) => t.target).join(", ")}${orphan ? " (its only target: the resource goes offline)" : ""}</li>`);
  }
  return lines;
}

function SiteRow({ site, live, actions }) {
  return html`<tr data-site=${site.id}>
    <th scope="row">${site.name}<br /><code class="small muted">${site.id}</code></th>
    <td><${Online} online=${live?.online ?? site.online} enabled=${site.enabled} /></td>
    <td class="hide-narrow">${live?.online ? html`<${Tunnels} site=${live} />` : html`<span class="muted" title=${when(site.last_seen_at)}>last seen ${ago(site.last_seen_at)}</span>`}</td>
    <td class="actions-cell">
      <button type="button" class="secondary" onClick=${() => actions.rotate(site)}>Rotate secret<span class="visually-hidden"> of ${site.name}</span></button>
      <button type="button" class="secondary" onClick=${() => actions.toggle(site)}>${site.enabled ? "Disable" : "Enable"}<span class="visually-hidden"> ${site.name}</span></button>
      <button type="button" class="danger" onClick=${() => actions.remove(site)}>Delete<span class="visually-hidden"> ${site.name}</span></button>
    </td>
  </tr>`;
}

export function Sites({ org }) {
  const sites = useLoad(() => all(orgPath(org.id, "/sites")), [org.id]);
  const { overview, state } = useOverview(org.id, (name, data, before) => {
    if (name === "changed" && data.kind === "site") sites.reload();
    if (name === "site" && before) {
      const old = before.sites.find((s) => s.id === data.id);
      if (!old || old.online !== data.online) announce(`Site ${data.name} is ${data.online ? "online" : "offline"}.`);
    }
  });
  const [settings, changeSettings] = useEdgeSettings();
  useTick();
  const [secret, setSecret] = useState(null); // {site, secret, how}
  const [error, setError] = useState(null);
  const [dialog, ask] = useConfirm();
  const live = Object.fromEntries((overview?.sites ?? []).map((s) => [s.id, s]));

  function shown(made, how) {
    setSecret({ ...made, how });
    sites.reload();
    announce(`Site ${made.site.name} ${how}. Its secret is shown once.`);
  }

  async function run(action) {
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(e);
    }
  }

  const actions = {
    rotate: (site) => run(async () => {
      const grace = { value: 86400 };
      const yes = await ask({
        title: `Rotate the secret of ${site.name}?`,
        confirm: "Rotate secret",
        danger: false,
        body: html`<p>The site gets a new secret, shown once. How long may its edges keep using the old one?</p>
          <label for="grace">The old secret stays valid for</label>
          <select id="grace" onChange=${(e) => { grace.value = Number(e.target.value); }}>
            ${GRACE.map(([v, t]) => html`<option value=${v} selected=${v === 86400}>${t}</option>`)}
          </select>`,
      });
      if (yes) shown(await post(orgPath(org.id, `/sites/${site.id}/rotate-secret`), { grace_seconds: grace.value }), "has a new secret");
    }),
    toggle: (site) => run(async () => {
      if (site.enabled) {
        const yes = await ask({
          title: `Disable ${site.name}?`,
          confirm: "Disable",
          body: html`<p>Its edges are disconnected and refused until you enable it again; its resources' targets there go offline.</p>`,
        });
        if (!yes) return;
      }
      await patch(orgPath(org.id, `/sites/${site.id}`), { enabled: !site.enabled });
      announce(`Site ${site.name} ${site.enabled ? "disabled" : "enabled"}.`);
      sites.reload();
    }),
    remove: (site) => run(async () => {
      const lost = takenDown(await get(orgPath(org.id, "/overview")), site.id); // as it is now
      const yes = await ask({
        title: `Delete ${site.name}?`,
        confirm: "Delete site",
        body: html`<p>Its edges are disconnected and its secret stops working.</p>
          ${lost.length ? html`<p>These targets are deleted with it:</p><ul class="taken-down">${lost}</ul>` : html`<p>No resource has a target at this site.</p>`}`,
      });
      if (!yes) return;
      await del(orgPath(org.id, `/sites/${site.id}`));
      if (secret?.site.id === site.id) setSecret(null);
      announce(`Site ${site.name} deleted.`);
      sites.reload();
    }),
  };

  const fresh = secret && (live[secret.site.id] ?? secret.site);
  return html`<${PageHead} title="Sites" lead="Private networks, each reached through the edge that runs there." />
    <${LiveState} state=${state} />
    ${error ? html`<${Failed} error=${error} />` : null}
    <${AddSite} org=${org} onCreated=${shown} />
    ${secret ? html`<${ShownOnce} title=${`Site ${secret.site.name} ${secret.how}`} text=${secret.secret} what="the site's secret">
      <${EdgeCommands} settings=${settings} site=${secret.site} secret=${secret.secret} />
      <p class="waiting" role="status">${fresh.online ? html`<${Online} online=${true} /> Its edge is connected.` : "Waiting for its edge to connect…"}</p>
      <${EdgeSettings} settings=${settings} change=${changeSettings} />
      <button type="button" class="secondary" onClick=${() => setSecret(null)}>Done: hide the secret</button>
    <//>` : null}
    <section aria-labelledby="site-list"><h2 id="site-list">Sites of ${org.name}</h2>
      ${sites.loading ? html`<${Loading} />` : null}
      ${sites.error ? html`<${Failed} error=${sites.error} />` : null}
      ${sites.data && !sites.data.length ? html`<p class="empty">No site yet: add one above.</p>` : null}
      ${sites.data?.length ? html`<${TableWrap} label="Sites"><table class="stack">
        <thead><tr><th scope="col">Site</th><th scope="col">State</th><th scope="col" class="hide-narrow">Tunnels</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>${sites.data.map((site) => html`<${SiteRow} key=${site.id} site=${site} live=${live[site.id]} actions=${actions} />`)}</tbody>
      </table><//>` : null}
    </section>
    ${dialog}`;
}
