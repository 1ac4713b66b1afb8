// The dashboard: sites and their tunnels, resources and their targets' health, the last hour's
// requests and denials, recent sign-ins; all live from the organization's events.
import { html } from "../html.js";
import { href } from "../router.js";
import { useOverview } from "../overview.js";
import { STATE_TEXT } from "../events.js";
import { address, ago, count, ms, when } from "../format.js";
import { Failed, Health, Loading, Online, Outcome, PageHead, announce, useTick } from "../components/status.js";
import { TableWrap } from "../components/table-wrap.js";

function announceSite(name, data, before) {
  if (name !== "site" || !before) return;
  const old = before.sites.find((s) => s.id === data.id);
  if (!old || old.online !== data.online) announce(`Site ${data.name} is ${data.online ? "online" : "offline"}.`);
}

export function LiveState({ state }) {
  return html`<p class="live-state muted"><span class="badge ${state === "live" ? "ok" : "warn"}">${STATE_TEXT[state]}</span>
    ${state === "live" ? " Updates as they happen." : ""}</p>`;
}

function Stats({ overview }) {
  const online = overview.sites.filter((s) => s.online).length;
  const items = [
    ["Sites online", `${online} of ${overview.sites.length}`],
    ["Resources", count(overview.resources.length)],
    ["Requests, last hour", count(overview.last_hour.requests)],
    ["Denials, last hour", count(overview.last_hour.denials)],
  ];
  return html`<ul class="stats" aria-label="In numbers">
    ${items.map(([label, value]) => html`<li class="card stat"><span class="value">${value}</span><span class="label">${label}</span></li>`)}
  </ul>`;
}

export function Tunnels({ site }) {
  if (!site.tunnels.length) return html`<span class="muted">none</span>`;
  return html`<ul class="tunnels">${site.tunnels.map((t) => html`<li>
    ${t.transport.toUpperCase()} to ${t.gateway}, RTT ${ms(t.rtt_ms)}, since <time datetime=${t.since} title=${when(t.since)}>${ago(t.since)}</time>${t.edge_version ? `, edge ${t.edge_version}` : ""}
  </li>`)}</ul>`;
}

function Sites({ org, sites }) {
  return html`<section aria-labelledby="dash-sites"><h2 id="dash-sites">Sites</h2>
    ${sites.length ? html`<${TableWrap} label="Sites"><table>
      <thead><tr><th scope="col">Site</th><th scope="col">State</th><th scope="col">Tunnels</th></tr></thead>
      <tbody>${sites.map((s) => html`<tr data-site=${s.id}>
        <th scope="row"><a href=${href(org.id, "sites")}>${s.name}</a></th>
        <td><${Online} online=${s.online} enabled=${s.enabled} /></td>
        <td><${Tunnels} site=${s} /></td>
      </tr>`)}</tbody></table><//>`
      : html`<p class="empty">No site yet. <a href=${href(org.id, "sites")}>Add a site</a> and run its edge.</p>`}
  </section>`;
}

function Resources({ org, overview }) {
  const numbers = Object.fromEntries(overview.last_hour.by_resource.map((r) => [r.resource_id, r]));
  const siteName = Object.fromEntries(overview.sites.map((s) => [s.id, s.name]));
  return html`<section aria-labelledby="dash-resources"><h2 id="dash-resources">Resources</h2>
    ${overview.resources.length ? html`<${TableWrap} label="Resources"><table>
      <thead><tr><th scope="col">Resource</th><th scope="col">Address</th><th scope="col">Targets</th>
        <th scope="col" class="num hide-narrow">Requests</th><th scope="col" class="num hide-narrow">Denials</th></tr></thead>
      <tbody>${overview.resources.map((r) => html`<tr data-resource=${r.id}>
        <th scope="row"><a href=${href(org.id, "resources", r.id)}>${r.name}</a>${r.enabled ? "" : html` <span class="badge">disabled</span>`}</th>
        <td><code>${address(r)}</code></td>
        <td>${r.targets.length ? html`<ul class="targets">${r.targets.map((t) => html`<li><code>${t.target}</code> <span class="muted small">at ${siteName[t.site_id] ?? "?"}</span> <${Health} target=${t} /></li>`)}</ul>` : html`<span class="muted">none</span>`}</td>
        <td class="num hide-narrow">${count(numbers[r.id]?.requests)}</td>
        <td class="num hide-narrow">${count(numbers[r.id]?.denials)}</td>
      </tr>`)}</tbody></table><//>`
      : html`<p class="empty">No resource yet. <a href=${href(org.id, "resources", "new")}>Add a resource</a>.</p>`}
  </section>`;
}

function SignIns({ signins }) {
  return html`<section aria-labelledby="dash-signins"><h2 id="dash-signins">Recent sign-ins</h2>
    ${signins.length ? html`<${TableWrap} label="Recent sign-ins"><table>
      <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Outcome</th><th scope="col" class="hide-narrow">How</th><th scope="col" class="hide-narrow">From</th></tr></thead>
      <tbody>${signins.map((e) => html`<tr>
        <td><time datetime=${e.at} title=${when(e.at)}>${ago(e.at)}</time></td>
        <td>${e.subject ?? e.user_id ?? "—"}</td>
        <td><${Outcome} outcome=${e.outcome} /></td>
        <td class="hide-narrow">${e.reason}</td>
        <td class="hide-narrow"><code>${e.client_address ?? ""}</code></td>
      </tr>`)}</tbody></table><//>` : html`<p class="empty">No sign-in yet.</p>`}
  </section>`;
}

export function Dashboard({ org }) {
  const { overview, state, error } = useOverview(org.id, announceSite);
  useTick();
  return html`<${PageHead} title="Dashboard" />
    <${LiveState} state=${state} />
    ${error ? html`<${Failed} error=${error} />` : null}
    ${overview ? html`<${Stats} overview=${overview} />
      <${Sites} org=${org} sites=${overview.sites} />
      <${Resources} org=${org} overview=${overview} />
      <${SignIns} signins=${overview.signins} />` : html`<${Loading} what="Loading the organization" />`}`;
}
