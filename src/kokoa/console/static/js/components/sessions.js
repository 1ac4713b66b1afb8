// A member's sign-in sessions: see them, end one, end them all.
import { html, useState } from "../html.js";
import { all, del, org as orgPath, post } from "../api.js";
import { ago, when } from "../format.js";
import { Failed, Loading, announce, useLoad } from "./status.js";
import { TableWrap } from "./table-wrap.js";

export function Sessions({ org, userId, name }) {
  const base = orgPath(org.id, `/users/${userId}/sessions`);
  const sessions = useLoad(() => all(base), [userId]);
  const [error, setError] = useState(null);
  async function act(action, message) {
    setError(null);
    try {
      await action();
      announce(message);
    } catch (e) {
      setError(e);
    }
    sessions.reload();
  }
  const live = (sessions.data ?? []).filter((s) => !s.revoked_at);
  return html`<div class="sessions" role="group" aria-label=${`Sessions of ${name}`}>
    <h3>Sessions of ${name}</h3>
    ${sessions.loading ? html`<${Loading} />` : null}
    ${sessions.error || error ? html`<${Failed} error=${sessions.error ?? error} />` : null}
    ${sessions.data && !live.length ? html`<p class="empty">No active session.</p>` : null}
    ${live.length ? html`<${TableWrap} label="Sessions"><table class="stack">
      <thead><tr><th scope="col">Signed in</th><th scope="col">Where</th><th scope="col">Last seen</th><th scope="col" class="hide-narrow">From</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${live.map((s) => html`<tr data-session=${s.id}>
        <td><time datetime=${s.created_at} title=${when(s.created_at)}>${ago(s.created_at)}</time> <span class="muted small">by ${s.method}</span></td>
        <td>${s.kind === "login" ? "the login host" : s.host ?? "a resource"}</td>
        <td><time datetime=${s.last_seen_at} title=${when(s.last_seen_at)}>${ago(s.last_seen_at)}</time></td>
        <td class="hide-narrow"><code>${s.source_address ?? ""}</code> <span class="muted small">${s.user_agent ?? ""}</span></td>
        <td class="actions-cell"><button type="button" class="danger" onClick=${() => act(() => del(`${base}/${s.id}`), "Session ended.")}
          aria-label=${`End the session on ${s.kind === "login" ? "the login host" : s.host ?? "a resource"} from ${ago(s.created_at)}`}>End</button></td>
      </tr>`)}</tbody></table><//>
      <div class="actions"><button type="button" class="danger" onClick=${() => act(async () => {
        const { revoked } = await post(`${base}/revoke`);
        return revoked;
      }, `Every session of ${name} ended.`)}>End every session of ${name}</button></div>` : null}
  </div>`;
}
