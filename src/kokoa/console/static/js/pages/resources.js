// Resources: the list (with targets' health, live), and the routes under it: new, one resource, its
// access page.
import { html } from "../html.js";
import { all, org as orgPath } from "../api.js";
import { href } from "../router.js";
import { useOverview } from "../overview.js";
import { address } from "../format.js";
import { AccessBadges, Badge, Failed, Health, Loading, PageHead, useLoad } from "../components/status.js";
import { NewResource } from "./resource-new.js";
import { ResourcePage } from "./resource.js";
import { TableWrap } from "../components/table-wrap.js";

function ResourceList({ org }) {
  const list = useLoad(() => all(orgPath(org.id, "/resources")), [org.id]);
  const { overview } = useOverview(org.id, (name, data) => {
    if (name === "changed" && data.kind === "resource") list.reload();
  });
  const targets = Object.fromEntries((overview?.resources ?? []).map((r) => [r.id, r.targets]));
  return html`<${PageHead} title="Resources" lead="The services people reach through the gateway.">
      <a class="button" href=${href(org.id, "resources", "new")}>Add a resource</a>
    <//>
    ${list.loading ? html`<${Loading} />` : null}
    ${list.error ? html`<${Failed} error=${list.error} />` : null}
    ${list.data && !list.data.length ? html`<p class="empty">No resource yet.</p>` : null}
    ${list.data?.length ? html`<${TableWrap} label="Resources"><table>
      <thead><tr><th scope="col">Resource</th><th scope="col">Kind</th><th scope="col">Address</th><th scope="col">Access</th><th scope="col" class="hide-narrow">Targets</th></tr></thead>
      <tbody>${list.data.map((r) => html`<tr data-resource=${r.id}>
        <th scope="row"><a href=${href(org.id, "resources", r.id)}>${r.name}</a>${r.enabled ? null : html` <${Badge}>disabled<//>`}</th>
        <td>${r.kind.toUpperCase()}</td>
        <td><code>${address(r)}</code></td>
        <td><${AccessBadges} resource=${r} /></td>
        <td class="hide-narrow">${(targets[r.id] ?? []).length
          ? html`<ul class="targets">${targets[r.id].map((t) => html`<li><code>${t.target}</code> <${Health} target=${t} /></li>`)}</ul>`
          : html`<span class="muted">none</span>`}</td>
      </tr>`)}</tbody>
    </table><//>` : null}`;
}

export function Resources({ org, route }) {
  if (route.id === "new") return html`<${NewResource} org=${org} />`;
  if (route.id) return html`<${ResourcePage} key=${route.id} org=${org} id=${route.id} tab=${route.tab} />`;
  return html`<${ResourceList} org=${org} />`;
}
