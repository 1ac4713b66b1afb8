// The edge commands of a site: `twistd kokoa-edge` dialing the gateway over TLS or WebSocket (wss://),
// with the site's id and secret, as `kokoa site add` prints them. The gateway's tunnel addresses are
// what edges dial; the console guesses them from the login host and the gateway's default ports,
// and the admin may correct them (kept in this browser).
import { html, useState } from "../html.js";
import { Copyable } from "./copy.js";

const STORE_KEY = "kokoa.edge-settings";

/** A word for a POSIX shell: as it is when safe, else in single quotes. */
export function shellQuote(text) {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  return `'${text.replace(/'/g, `'"'"'`)}'`;
}

/**
 * The first guess: the login host's name (it reaches this gateway) and the gateway's default tunnel
 * ports. On a machine of one's own (login.localhost), the name the development certificate holds is
 * localhost, and `make run` keeps the CA in ./data.
 */
export function defaultSettings() {
  const name = location.hostname;
  const local = name === "localhost" || name.endsWith(".localhost");
  const host = local ? "localhost" : name.includes(":") ? `[${name}]` : name;
  return { tls: `tls:${host}:7443`, wss: `wss://${host}:7444/tunnel`, caFile: local ? "data/tls/ca.pem" : "ca.pem" };
}

export function useEdgeSettings() {
  const [settings, setSettings] = useState(() => {
    try {
      return { ...defaultSettings(), ...JSON.parse(localStorage.getItem(STORE_KEY) ?? "{}") };
    } catch {
      return defaultSettings();
    }
  });
  const change = (name, value) => {
    const next = { ...settings, [name]: value };
    setSettings(next);
    localStorage.setItem(STORE_KEY, JSON.stringify(next));
  };
  return [settings, change];
}

export function edgeCommand(settings, transport, siteId, secret) {
  const trust = settings.caFile ? ` --ca-file ${shellQuote(settings.caFile)}` : "";
  return `KOKOA_SITE_SECRET=${shellQuote(secret)} twistd --pidfile= -n kokoa-edge --gateway ${shellQuote(settings[transport])} --site ${shellQuote(siteId)}${trust}`;
}

/** Where edges dial this gateway, and its CA file (edited in place, remembered in this browser). */
export function EdgeSettings({ settings, change }) {
  const field = (name, label, hint) => html`<div class="field">
    <label for=${`edge-${name}`}>${label}</label>
    <input id=${`edge-${name}`} value=${settings[name]} onInput=${(e) => change(name, e.target.value.trim())} aria-describedby=${`edge-${name}-hint`} />
    <p class="hint" id=${`edge-${name}-hint`}>${hint}</p>
  </div>`;
  return html`<details class="panel edge-settings">
    <summary>Where edges reach this gateway</summary>
    <p class="hint">The commands use these addresses; change them if your edges dial another name or port (the gateway's <code>--tunnel</code> and <code>--tunnel-ws</code>).</p>
    <div class="grid-2">
      ${field("tls", "Tunnel address (TLS)", "such as tls:gw.example.com:7443")}
      ${field("wss", "Tunnel address (WebSocket)", "such as wss://gw.example.com:7444/tunnel")}
    </div>
    ${field("caFile", "The gateway's CA file on the edge", "Its development CA (DATA_DIR/tls/ca.pem, copied to the edge). Empty when the gateway has a publicly trusted certificate.")}
  </details>`;
}

/** Both forms of a site's edge command, each with its copy button. */
export function EdgeCommands({ settings, site, secret }) {
  return html`<div class="edge-commands">
    <h4>Run the edge next to the services of ${site.name}</h4>
    <p class="hint">Over TLS (the default):</p>
    <${Copyable} text=${edgeCommand(settings, "tls", site.id, secret)} what="the edge command (TLS)" />
    <p class="hint">Over WebSocket, through HTTP proxies and CDNs:</p>
    <${Copyable} text=${edgeCommand(settings, "wss", site.id, secret)} what="the edge command (wss)" />
  </div>`;
}
