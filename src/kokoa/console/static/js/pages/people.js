// People: members and their roles, invitations, password-reset links, sessions; roles; API keys.
import { html, useState } from "../html.js";
import { del, org as orgPath, patch, post } from "../api.js";
import { useDirectory } from "../directory.js";
import { useSession } from "../session.js";
import { when } from "../format.js";
import { Field, Form, useForm } from "../components/form.js";
import { ShownOnce } from "../components/copy.js";
import { useConfirm } from "../components/dialog.js";
import { Sessions } from "../components/sessions.js";
import { ApiKeys } from "../components/api-keys.js";
import { Badge, Failed, Loading, PageHead, announce } from "../components/status.js";
import { TableWrap } from "../components/table-wrap.js";

/** A one-time link of the login host (an invitation, a password reset) as people open it. */
const loginLink = (path) => `${location.origin}${path}`;

function Invite({ org, people, shown }) {
  const form = useForm({ email: "", role_id: "" });
  const roles = [["", "Choose a role"], ...people.roles.map((r) => [r.id, r.name])];
  async function invite(v) {
    const made = await post(orgPath(org.id, "/invitations"), { email: v.email.trim(), role_id: v.role_id || undefined });
    form.setValues({ email: "", role_id: "" });
    shown({ title: `Invitation for ${made.user.email}`, text: loginLink(made.path), what: "the invitation link",
      note: `Send it to them: it lets them choose a password, once, until ${when(made.expires_at)}.` });
    people.reload();
  }
  return html`<section class="card" aria-labelledby="invite-title"><h2 id="invite-title">Invite someone</h2>
    <${Form} form=${form} onSubmit=${invite} submit="Invite" label="Invite someone">
      <div class="grid-2">
        <${Field} form=${form} name="email" label="Email" type="email" required autocomplete="off" />
        <${Field} form=${form} name="role_id" label="Role" type="select" options=${roles} required />
      </div>
    <//>
  </section>`;
}

function Members({ org, people, shown }) {
  const me = useSession();
  const [open, setOpen] = useState(null);
  const [error, setError] = useState(null);
  const [dialog, ask] = useConfirm();
  async function act(action) {
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(e);
    }
  }
  const changeRole = (m, roleId) => act(async () => {
    await patch(orgPath(org.id, `/members/${m.user_id}`), { role_id: roleId });
    announce(`${people.name(m.user_id)} is now ${people.role(roleId)}.`);
    people.reload();
  });
  const reset = (m) => act(async () => {
    const link = await post(orgPath(org.id, `/users/${m.user_id}/password-reset`));
    shown({ title: `Password reset link for ${people.name(m.user_id)}`, text: loginLink(link.path), what: "the password reset link",
      note: `It sets a new password once, until ${when(link.expires_at)}.` });
  });
  const remove = (m) => act(async () => {
    if (!(await ask({ title: `Remove ${people.name(m.user_id)}?`, confirm: "Remove member",
      body: html`<p>They lose their role and the grants given to them in ${org.name}. Their account stays.</p>` }))) return;
    await del(orgPath(org.id, `/members/${m.user_id}`));
    announce(`${people.name(m.user_id)} removed.`);
    people.reload();
  });
  return html`<section class="card" aria-labelledby="members-title"><h2 id="members-title">Members</h2>
    ${error ? html`<${Failed} error=${error} />` : null}
    <${TableWrap} label="Members"><table class="stack">
      <thead><tr><th scope="col">Member</th><th scope="col">Role</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${people.members.map((m) => {
        const name = people.name(m.user_id);
        const self = m.user_id === me.user?.id;
        return html`<tr data-member=${m.user_id}>
          <th scope="row">${name}${m.status && m.status !== "active" ? html` <${Badge} kind="warn">${m.status}<//>` : null}</th>
          <td><label class="visually-hidden" for=${`role-${m.user_id}`}>Role of ${name}</label>
            <select id=${`role-${m.user_id}`} value=${m.role_id} disabled=${self} onChange=${(e) => changeRole(m, e.target.value)}>
              ${people.roles.map((r) => html`<option value=${r.id}>${r.name}</option>`)}
            </select></td>
          <td class="actions-cell">
            <button type="button" class="secondary" aria-expanded=${open === m.user_id ? "true" : "false"} onClick=${() => setOpen(open === m.user_id ? null : m.user_id)}>Sessions<span class="visually-hidden"> of ${name}</span></button>
            <button type="button" class="secondary" onClick=${() => reset(m)}>Reset link<span class="visually-hidden"> for ${name}</span></button>
            ${self ? null : html`<button type="button" class="danger" onClick=${() => remove(m)}>Remove<span class="visually-hidden"> ${name}</span></button>`}
          </td>
        </tr>
        ${open === m.user_id ? html`<tr><td colspan="3"><${Sessions} org=${org} userId=${m.user_id} name=${name} /></td></tr>` : null}`;
      })}</tbody>
    </table><//>
    ${dialog}
  </section>`;
}

function Roles({ org, people }) {
  const form = useForm({ name: "", description: "" });
  const [error, setError] = useState(null);
  const [dialog, ask] = useConfirm();
  async function create(v) {
    await post(orgPath(org.id, "/roles"), { name: v.name.trim(), description: v.description.trim() });
    form.setValues({ name: "", description: "" });
    announce(`Role ${v.name} created.`);
    people.reload();
  }
  async function remove(role) {
    if (!(await ask({ title: `Delete the role ${role.name}?`, confirm: "Delete role", body: html`<p>Its grants go with it.</p>` }))) return;
    setError(null);
    try {
      await del(orgPath(org.id, `/roles/${role.id}`));
      announce(`Role ${role.name} deleted.`);
      people.reload();
    } catch (e) {
      setError(e);
    }
  }
  return html`<section class="card" aria-labelledby="roles-title"><h2 id="roles-title">Roles</h2>
    <p class="hint">Owners and Admins manage the organization; every other role opens what its grants allow.</p>
    ${error ? html`<${Failed} error=${error} />` : null}
    <ul class="roles">${people.roles.map((r) => html`<li data-role=${r.id}><strong>${r.name}</strong>
      ${r.builtin ? html` <${Badge}>built in<//>` : html` <button type="button" class="link" onClick=${() => remove(r)}>Delete<span class="visually-hidden"> the role ${r.name}</span></button>`}
      ${r.description ? html`<span class="muted small"> — ${r.description}</span>` : null}</li>`)}</ul>
    <${Form} form=${form} onSubmit=${create} submit="Create role" label="Create a role">
      <div class="grid-2">
        <${Field} form=${form} name="name" label="Role name" required autocomplete="off" />
        <${Field} form=${form} name="description" label="Description" autocomplete="off" />
      </div>
    <//>
    ${dialog}
  </section>`;
}

export function People({ org }) {
  const people = useDirectory(org.id);
  const [link, setLink] = useState(null);
  const shown = (l) => {
    setLink(l);
    announce(`${l.title}: copy it now.`);
  };
  return html`<${PageHead} title="People" lead=${`Who belongs to ${org.name}, and the keys programs use.`} />
    ${people.loading ? html`<${Loading} />` : null}
    ${people.error ? html`<${Failed} error=${people.error} />` : null}
    ${link ? html`<${ShownOnce} title=${link.title} text=${link.text} what=${link.what}>
      <p>${link.note}</p><button type="button" class="secondary" onClick=${() => setLink(null)}>Done</button>
    <//>` : null}
    ${people.data ? html`<${Members} org=${org} people=${people} shown=${shown} />
      <${Invite} org=${org} people=${people} shown=${shown} />
      <${Roles} org=${org} people=${people} />
      <${ApiKeys} org=${org} people=${people} />` : null}`;
}
