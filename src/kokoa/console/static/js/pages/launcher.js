// The launcher: the resources of this organization the signed-in user may open.
import { html } from "../html.js";
import { get } from "../api.js";
import { Badge, Failed, Loading, PageHead, useLoad } from "../components/status.js";
import { CopyButton } from "../components/copy.js";

export function Launcher({ org }) {
  const { data, error, loading } = useLoad(() => get("/me/resources"), []);
  const items = (data?.items ?? []).filter((item) => item.org_id === org.id);
  return html`<${PageHead} title="Your resources" lead=${`What you may open in ${org.name}.`} />
    ${loading ? html`<${Loading} />` : null}
    ${error ? html`<${Failed} error=${error} />` : null}
    ${data && !items.length ? html`<p class="empty">Nothing to open here yet: ask an administrator for access.</p>` : null}
    ${items.length ? html`<ul class="launcher" aria-label="Resources you may open">
      ${items.map((item) => html`<li class="card">
        <h2>${item.name}</h2>
        <p><${Badge}>${item.kind.toUpperCase()}<//> ${item.public ? html`<${Badge} kind="ok">public<//>` : null}</p>
        ${item.url
          ? html`<p><a class="button" href=${item.url} target="_blank" rel="noopener">Open ${item.name}</a></p><p class="hint">${item.url}</p>`
          : item.address
            ? html`<p><code>${item.address}</code> <${CopyButton} text=${item.address} what=${`the address of ${item.name}`} /></p>`
            : html`<p class="hint">A wildcard hostname: open any of its names.</p>`}
      </li>`)}
    </ul>` : null}`;
}
