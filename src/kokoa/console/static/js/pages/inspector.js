// The request inspector: the requests going through an HTTP resource now, live (the resource's
// inspect stream); pick one to see its request and response heads (credentials redacted by the gateway).
import { html, useRef, useState } from "../html.js";
import { all, org as orgPath } from "../api.js";
import { href } from "../router.js";
import { useEvents } from "../events.js";
import { bytes, ms, time, when } from "../format.js";
import { Badge, Failed, Loading, PageHead, useLoad } from "../components/status.js";
import { TableWrap } from "../components/table-wrap.js";

const MAX_ROWS = 500;
const DECISION_KIND = { allow: "ok", bypass: "warn", deny: "bad", authenticate: "warn" };

function statusKind(status) {
  if (status == null) return "";
  if (status >= 500) return "bad";
  if (status >= 400) return "warn";
  return "ok";
}

export const ruleText = (rule) => (rule ? rule.pattern ?? [rule.action, rule.method, rule.path, rule.cidr].filter(Boolean).join(" ") : "default");

function Heads({ title, headers }) {
  return html`<h3>${title}</h3>${headers.length ? html`<dl class="headers">${headers.map(([name, value]) => html`<dt>${name}</dt><dd class=${value === "[redacted]" ? "redacted" : ""}>${value}</dd>`)}</dl>` : html`<p class="empty">none</p>`}`;
}

function Details({ entry, siteName, close }) {
  return html`<section class="card request-details" aria-labelledby="request-title">
    <h2 id="request-title" tabindex="-1">${entry.method} ${entry.path}</h2>
    <p>${entry.status ?? "no answer"} in ${ms(entry.duration_ms)} at <time datetime=${entry.time}>${when(entry.time)}</time>; ${entry.ended}.</p>
    <p>From <code>${entry.client_address}</code>${entry.user ? ` (${entry.user})` : ""}; decided <${Badge} kind=${DECISION_KIND[entry.decision] ?? ""}>${entry.decision ?? "—"}<//> by ${ruleText(entry.rule)};
      ${entry.target ? html` served by <code>${entry.target.target}</code> at ${siteName(entry.target.site_id)}` : " served by the gateway itself"}.</p>
    <${Heads} title="Request headers" headers=${entry.request_headers} />
    <${Heads} title="Response headers" headers=${entry.response_headers} />
    <button type="button" class="secondary" onClick=${close}>Close</button>
  </section>`;
}

function Watch({ org, resource, sites }) {
  const [rows, setRows] = useState([]);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState([]);
  const [chosen, setChosen] = useState(null);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const siteName = (id) => sites.find((s) => s.id === id)?.name ?? id;
  const state = useEvents(orgPath(org.id, `/resources/${resource.id}/inspect`), {
    request: (entry) => {
      if (pausedRef.current) setHeld((old) => [entry, ...old].slice(0, MAX_ROWS));
      else setRows((old) => (old.some((e) => e.id === entry.id) ? old : [entry, ...old].slice(0, MAX_ROWS)));
    },
  });
  function resume() {
    setRows((old) => [...held, ...old].slice(0, MAX_ROWS));
    setHeld([]);
    setPaused(false);
  }
  const selected = rows.find((e) => e.id === chosen);
  return html`<p class="live-state"><${Badge} kind=${state === "live" ? "ok" : "warn"}>${state === "live" ? "Watching" : "Connecting…"}<//>
      <span class="muted"> ${rows.length} request(s) shown${paused ? `, ${held.length} held while paused` : ""}.</span></p>
    <div class="actions">
      ${paused ? html`<button type="button" onClick=${resume}>Resume</button>` : html`<button type="button" class="secondary" onClick=${() => setPaused(true)}>Pause</button>`}
      <button type="button" class="secondary" onClick=${() => { setRows([]); setChosen(null); }}>Clear</button>
    </div>
    <div class="inspector-layout">
      <${TableWrap} label="Requests">${rows.length ? html`<table class="inspector-table">
        <caption class="visually-hidden">Requests to ${resource.name}, newest first</caption>
        <thead><tr><th scope="col">Time</th><th scope="col">Request</th><th scope="col">Status</th><th scope="col" class="num">Duration</th>
          <th scope="col" class="num hide-narrow">Bytes in/out</th><th scope="col" class="hide-narrow">Who</th><th scope="col" class="hide-narrow">Rule</th><th scope="col" class="hide-narrow">Target</th></tr></thead>
        <tbody>${rows.map((e) => html`<tr key=${e.id} data-request=${e.id} class=${e.id === chosen ? "selected" : ""}>
          <td><time datetime=${e.time}>${time(e.time)}</time></td>
          <td><button type="button" class="link" aria-pressed=${e.id === chosen ? "true" : "false"} onClick=${() => setChosen(e.id === chosen ? null : e.id)}>${e.method} ${e.path}</button>
            ${e.skipped ? html`<br /><span class="muted small">${e.skipped} more not shown (rate limit)</span>` : null}</td>
          <td><${Badge} kind=${statusKind(e.status)}>${e.status ?? e.ended}<//></td>
          <td class="num">${ms(e.duration_ms)}</td>
          <td class="num hide-narrow">${bytes(e.bytes_in)} / ${bytes(e.bytes_out)}</td>
          <td class="hide-narrow">${e.user ?? html`<span class="muted">anonymous</span>`}</td>
          <td class="hide-narrow"><${Badge} kind=${DECISION_KIND[e.decision] ?? ""}>${e.decision ?? "—"}<//> <span class="small">${ruleText(e.rule)}</span></td>
          <td class="hide-narrow">${e.target ? html`<code>${e.target.target}</code>` : "—"}</td>
        </tr>`)}</tbody>
      </table>` : html`<p class="empty">Waiting for requests to ${resource.name}…</p>`}<//>
      ${selected ? html`<${Details} entry=${selected} siteName=${siteName} close=${() => setChosen(null)} />` : null}
    </div>`;
}

export function Inspector({ org, route }) {
  const resources = useLoad(() => all(orgPath(org.id, "/resources?kind=http")), [org.id]);
  const sites = useLoad(() => all(orgPath(org.id, "/sites")), [org.id]);
  const resource = resources.data?.find((r) => r.id === route.id);
  return html`<${PageHead} title=${resource ? `Inspector: ${resource.name}` : "Inspector"}
      lead="The requests going through an HTTP resource right now. The gateway keeps them only while someone watches." />
    ${resources.loading || sites.loading ? html`<${Loading} />` : null}
    ${resources.error ? html`<${Failed} error=${resources.error} />` : null}
    ${resources.data ? html`<nav aria-label="HTTP resources"><ul class="tabs">
      ${resources.data.map((r) => html`<li><a href=${href(org.id, "inspector", r.id)} aria-current=${r.id === route.id ? "page" : undefined}>${r.name}</a></li>`)}
    </ul></nav>` : null}
    ${resources.data && !resources.data.length ? html`<p class="empty">No HTTP resource to inspect.</p>` : null}
    ${resources.data && !route.id && resources.data.length ? html`<p>Choose a resource to watch.</p>` : null}
    ${resources.data && route.id && !resource ? html`<p class="notice error">No HTTP resource ${route.id} here.</p>` : null}
    ${resource && sites.data ? html`<${Watch} key=${resource.id} org=${org} resource=${resource} sites=${sites.data} />` : null}`;
}
