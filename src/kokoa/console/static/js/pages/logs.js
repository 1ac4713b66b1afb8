// Logs: the access log (filters, live tail), the audit log, and charts of requests per resource.
import { html } from "../html.js";
import { href } from "../router.js";
import { PageHead } from "../components/status.js";
import { AccessLog } from "../components/access-log.js";
import { AuditLog } from "../components/audit-log.js";
import { Charts } from "../components/charts.js";

const TABS = [[null, "Access log"], ["audit", "Audit log"], ["charts", "Charts"]];

export function Logs({ org, route }) {
  const tab = TABS.some(([name]) => name === route.id) ? route.id : null;
  return html`<${PageHead} title="Logs" lead="Every decision the gateway made, every change an admin made." />
    <nav aria-label="Logs"><ul class="tabs">
      ${TABS.map(([name, label]) => html`<li><a href=${href(org.id, "logs", name)} aria-current=${tab === name ? "page" : undefined}>${label}</a></li>`)}
    </ul></nav>
    ${tab === "audit" ? html`<${AuditLog} org=${org} />` : tab === "charts" ? html`<${Charts} org=${org} />` : html`<${AccessLog} org=${org} />`}`;
}
