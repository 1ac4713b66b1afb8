// A resource's access page: public or protected, grants, its own password, PIN and email allow-list,
// share links, and rules with a "test this request" box.
import { html } from "../html.js";
import { org as orgPath, patch } from "../api.js";
import { Field, Form, Radios, useForm } from "../components/form.js";
import { announce } from "../components/status.js";
import { Grants } from "../components/grants.js";
import { ShareLinks } from "../components/share-links.js";
import { Rules } from "../components/rules.js";

function useSave(org, resource, saved) {
  return async (body, message) => {
    saved(await patch(orgPath(org.id, `/resources/${resource.id}`), body));
    announce(message);
  };
}

function Exposure({ org, resource, saved }) {
  const form = useForm({ access: resource.public ? "public" : "protected" });
  const save = useSave(org, resource, saved);
  return html`<section class="card" aria-labelledby="exposure-title"><h2 id="exposure-title">Public or protected</h2>
    <${Form} form=${form} label="Public or protected" onSubmit=${(v) => save({ public: v.access === "public" }, "Access saved.")}>
      <${Radios} form=${form} name="access" legend="Who may reach it" options=${[
        ["protected", "Protected", resource.kind === "http" ? "people sign in, and need a grant (or the resource's password, PIN, email code or a share link)" : "only the addresses its rules allow"],
        ["public", "Public", "anyone, without signing in; its rules still apply"],
      ]} />
    <//>
  </section>`;
}

function Secret({ org, resource, saved, name, label, noun, has, hint, inputmode }) {
  const form = useForm({ [name]: "" });
  const save = useSave(org, resource, saved);
  const set = async (v) => {
    await save({ [name]: v[name] }, `${label} set.`);
    form.setValues({ [name]: "" });
  };
  return html`<div class="secret-setting">
    <h3>${label} <span class="badge ${has ? "ok" : ""}">${has ? "set" : "none"}</span></h3>
    <${Form} form=${form} onSubmit=${set} submit=${has ? `Change the ${noun}` : `Set a ${noun}`} label=${label}
        secondary=${has ? html`<button type="button" class="secondary" onClick=${() => form.submit(null, () => save({ [name]: null }, `${label} removed.`))}>Remove the ${noun}</button>` : null}>
      <${Field} form=${form} name=${name} label=${`New ${noun}`} type="password" autocomplete="new-password" hint=${hint} inputmode=${inputmode} />
    <//>
  </div>`;
}

function EmailAllow({ org, resource, saved }) {
  const form = useForm({ auth_email_allow: resource.auth_email_allow.join("\n") });
  const save = useSave(org, resource, saved);
  const submit = (v) => save({ auth_email_allow: v.auth_email_allow.split(/[\s,]+/).filter(Boolean) }, "Email allow-list saved.");
  return html`<div><h3>Email allow-list</h3>
    <${Form} form=${form} onSubmit=${submit} label="Email allow-list" submit="Save the allow-list">
      <${Field} form=${form} name="auth_email_allow" label="Addresses and @domains" type="textarea" rows="4"
        hint="One a line, such as ann@example.com or @example.com: they sign in to this resource with a code sent by email." />
    <//></div>`;
}

export function Access({ org, resource, saved }) {
  const http = resource.kind === "http";
  return html`<${Exposure} org=${org} resource=${resource} saved=${saved} />
    <${Grants} org=${org} resource=${resource} />
    ${http ? html`<section class="card" aria-labelledby="own-title"><h2 id="own-title">The resource's own sign-in</h2>
      <p class="hint">Ways in to this resource alone, for people without an account.</p>
      <div class="grid-2">
        <${Secret} org=${org} resource=${resource} saved=${saved} name="auth_password" label="Password" noun="password" has=${resource.has_password} hint="8 characters or more" />
        <${Secret} org=${org} resource=${resource} saved=${saved} name="auth_pin" label="PIN" noun="PIN" has=${resource.has_pin} hint="6 to 12 digits" inputmode="numeric" />
      </div>
      <${EmailAllow} org=${org} resource=${resource} saved=${saved} />
    </section>
    <${ShareLinks} org=${org} resource=${resource} />` : null}
    <${Rules} org=${org} resource=${resource} />`;
}
