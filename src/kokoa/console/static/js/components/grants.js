// Who may reach a protected resource: grants to roles and to members.
import { html, useState } from "../html.js";
import { all, del, org as orgPath, post } from "../api.js";
import { useDirectory } from "../directory.js";
import { Field, Form, useForm } from "./form.js";
import { Failed, Loading, announce, useLoad } from "./status.js";

export function Grants({ org, resource }) {
  const base = orgPath(org.id, `/resources/${resource.id}/grants`);
  const grants = useLoad(() => all(base), [resource.id]);
  const people = useDirectory(org.id);
  const [error, setError] = useState(null);
  const form = useForm({ who: "" });
  const label = (g) => (g.role_id ? `Role: ${people.role(g.role_id)}` : `Member: ${people.name(g.user_id)}`);
  const options = [
    ["", "Choose a role or a member"],
    ...people.roles.map((r) => [`role:${r.id}`, `Role: ${r.name}`]),
    ...people.members.map((m) => [`user:${m.user_id}`, `Member: ${people.name(m.user_id)}`]),
  ];

  async function give(v) {
    const [kind, id] = v.who.split(":");
    try {
      await post(base, kind === "role" ? { role_id: id } : kind === "user" ? { user_id: id } : {});
    } catch (e) {
      // The API names role_id or user_id (or neither): both are this one field here.
      e.fields = { who: Object.values(e.fields).join(" ") || e.message };
      throw e;
    }
    form.setValues({ who: "" });
    announce("Access given.");
    grants.reload();
  }
  async function take(g) {
    setError(null);
    try {
      await del(`${base}/${g.id}`);
      announce(`Access taken from ${label(g)}.`);
      grants.reload();
    } catch (e) {
      setError(e);
    }
  }

  return html`<section class="card" aria-labelledby="grants-title"><h2 id="grants-title">Grants</h2>
    <p class="hint">${resource.public ? "The resource is public: grants matter once it is protected again." : "Signed-in people reach it with a grant to them or to their role."}</p>
    ${grants.loading || people.loading ? html`<${Loading} />` : null}
    ${grants.error || people.error || error ? html`<${Failed} error=${grants.error ?? people.error ?? error} />` : null}
    ${grants.data && !grants.data.length ? html`<p class="empty">Nobody has a grant yet.</p>` : null}
    ${grants.data?.length ? html`<ul class="grants">${grants.data.map((g) => html`<li data-grant=${g.id}>
      ${label(g)} <button type="button" class="link" onClick=${() => take(g)}>Take away<span class="visually-hidden"> the grant of ${label(g)}</span></button>
    </li>`)}</ul>` : null}
    <${Form} form=${form} onSubmit=${give} submit="Give access" label="Give access">
      <${Field} form=${form} name="who" label="Role or member" type="select" options=${options} />
    <//>
  </section>`;
}
