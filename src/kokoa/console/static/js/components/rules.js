// A resource's rules, lowest priority first: add, edit, reorder, delete; and a box that asks the
// gateway's own policy engine which rule decides a given request.
import { html, useState } from "../html.js";
import { all, del, org as orgPath, patch, post } from "../api.js";
import { Field, Form, useForm } from "./form.js";
import { useConfirm } from "./dialog.js";
import { Badge, Failed, Loading, announce, useLoad } from "./status.js";
import { TableWrap } from "./table-wrap.js";

const ACTIONS = [["allow", "Allow"], ["deny", "Deny"], ["bypass", "Bypass sign-in"]];
const ACTION_KIND = { allow: "ok", deny: "bad", bypass: "warn" };

const describe = (r) => [r.method ?? "any method", r.path ? `path ${r.path}` : null, r.cidr ? `from ${r.cidr}` : null].filter(Boolean).join(", ");

function RuleForm({ org, resource, rule, next, done, label }) {
  const http = resource.kind === "http";
  const initial = { action: rule?.action ?? "deny", method: rule?.method ?? "", path: rule?.path ?? "", cidr: rule?.cidr ?? "", priority: rule?.priority ?? next, enabled: rule?.enabled ?? true };
  const form = useForm(initial);
  const base = orgPath(org.id, `/resources/${resource.id}/rules`);
  async function save(v) {
    const body = { action: v.action, cidr: v.cidr.trim() || null, priority: v.priority === "" ? undefined : v.priority, enabled: v.enabled };
    if (http) Object.assign(body, { method: v.method.trim() || null, path: v.path.trim() || null });
    const saved = rule ? await patch(`${base}/${rule.id}`, body) : await post(base, body);
    announce(rule ? "Rule saved." : "Rule added.");
    if (!rule) form.setValues({ ...initial, priority: (saved.priority ?? 0) + 10 });
    done(saved);
  }
  return html`<${Form} form=${form} onSubmit=${save} submit=${rule ? "Save rule" : "Add rule"} label=${label}
      secondary=${rule ? html`<button type="button" class="secondary" onClick=${() => done(null)}>Cancel</button>` : null}>
    <div class="grid-2">
      <${Field} form=${form} name="action" label="Action" type="select" options=${ACTIONS} />
      <${Field} form=${form} name="priority" label="Priority" type="number" hint="lowest first" />
      ${http ? html`<${Field} form=${form} name="method" label="Method" hint="such as GET; empty: any" autocomplete="off" />
      <${Field} form=${form} name="path" label="Path" hint="* matches any run of characters, such as /api/*; empty: any" autocomplete="off" />` : null}
      <${Field} form=${form} name="cidr" label="Client network" hint="such as 10.0.0.0/8 or 203.0.113.7; empty: any" autocomplete="off" />
    </div>
    <${Field} form=${form} name="enabled" label="Enabled" type="checkbox" />
  <//>`;
}

function Tester({ org, resource, onResult }) {
  const http = resource.kind === "http";
  const form = useForm({ method: "GET", path: resource.path_prefix ?? "/", client_address: "203.0.113.10" });
  const [result, setResult] = useState(null);
  async function test(v) {
    const answer = await post(orgPath(org.id, `/resources/${resource.id}/rules/test`), {
      method: http ? v.method.trim() : "GET", path: http ? v.path : "/", client_address: v.client_address.trim(),
    });
    setResult(answer);
    onResult(answer);
  }
  return html`<div class="tester"><h3>Test a request</h3>
    <p class="hint">What the gateway would decide for someone not signed in, by its own router and policy engine.</p>
    <${Form} form=${form} onSubmit=${test} submit="Test" label="Test a request">
      <div class="inline-form">
        ${http ? html`<${Field} form=${form} name="method" label="Request method" autocomplete="off" />
        <${Field} form=${form} name="path" label="Request path" autocomplete="off" />` : null}
        <${Field} form=${form} name="client_address" label="Client address" autocomplete="off" />
      </div>
    <//>
    <div role="status" class="test-result">${result ? html`<p class="notice">
      <strong>Decision: <${Badge} kind=${ACTION_KIND[result.decision] ?? ""}>${result.decision}<//></strong>
      ${result.rule ? html` by the rule at priority ${result.rule.priority} (${result.rule.action}: ${describe(result.rule)})` : " by the resource's default"}.
      <br /><span class="muted">${result.reason}</span></p>` : null}</div>
  </div>`;
}

export function Rules({ org, resource }) {
  const base = orgPath(org.id, `/resources/${resource.id}/rules`);
  const rules = useLoad(() => all(base), [resource.id]);
  const [editing, setEditing] = useState(null);
  const [decided, setDecided] = useState(null);
  const [error, setError] = useState(null);
  const [dialog, ask] = useConfirm();
  const list = rules.data ?? [];
  const next = list.length ? list[list.length - 1].priority + 10 : 10;

  async function act(action) {
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(e);
    }
    rules.reload();
  }
  /**
   * Move a rule one place up or down: it swaps priorities with its neighbour. Priorities are unique per
   * resource, so the rule waits at a free priority (after every other) while its neighbour moves.
   */
  const move = (index, step) => act(async () => {
    const rule = list[index];
    const other = list[index + step];
    const spare = Math.max(...list.map((r) => r.priority)) + 1;
    await patch(`${base}/${rule.id}`, { priority: spare });
    await patch(`${base}/${other.id}`, { priority: rule.priority });
    await patch(`${base}/${rule.id}`, { priority: other.priority });
    announce(`Rule moved ${step < 0 ? "up" : "down"}: it is now number ${index + step + 1}.`);
  });
  const remove = (r) => act(async () => {
    if (await ask({ title: "Delete this rule?", confirm: "Delete rule", body: html`<p>${r.action}: ${describe(r)}</p>` })) {
      await del(`${base}/${r.id}`);
      announce("Rule deleted.");
    }
  });

  return html`<section class="card" aria-labelledby="rules-title"><h2 id="rules-title">Rules</h2>
    <p class="hint">Checked in order before anything else; the first that matches decides: allow, deny, or let through without signing in (bypass).</p>
    ${rules.loading ? html`<${Loading} />` : null}
    ${rules.error || error ? html`<${Failed} error=${rules.error ?? error} />` : null}
    ${rules.data && !list.length ? html`<p class="empty">No rule: the resource's default decides.</p>` : null}
    ${list.length ? html`<${TableWrap} label="Rules"><table class="rules stack">
      <thead><tr><th scope="col">Order</th><th scope="col">Action</th><th scope="col">Matches</th><th scope="col" class="num hide-narrow">Priority</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${list.map((r, i) => html`<tr data-rule=${r.id} class=${decided === r.id ? "selected" : ""}>
        <td>${i + 1}${decided === r.id ? html` <${Badge} kind="warn">decides the test<//>` : null}</td>
        <td><${Badge} kind=${ACTION_KIND[r.action]}>${r.action}<//>${r.enabled ? null : html` <${Badge}>disabled<//>`}</td>
        <td>${describe(r)}</td>
        <td class="num hide-narrow">${r.priority}</td>
        <td class="actions-cell">
          <button type="button" class="secondary" disabled=${i === 0} onClick=${() => move(i, -1)} aria-label=${`Move rule ${i + 1} up`}>Up</button>
          <button type="button" class="secondary" disabled=${i === list.length - 1} onClick=${() => move(i, 1)} aria-label=${`Move rule ${i + 1} down`}>Down</button>
          <button type="button" class="secondary" onClick=${() => setEditing(r.id)}>Edit<span class="visually-hidden"> rule ${i + 1}</span></button>
          <button type="button" class="danger" onClick=${() => remove(r)}>Delete<span class="visually-hidden"> rule ${i + 1}</span></button>
        </td>
      </tr>
      ${editing === r.id ? html`<tr><td colspan="5"><${RuleForm} org=${org} resource=${resource} rule=${r} label=${`Edit rule ${i + 1}`}
        done=${(saved) => { setEditing(null); if (saved) rules.reload(); }} /></td></tr>` : null}`)}</tbody>
    </table><//>` : null}
    <h3>Add a rule</h3>
    ${rules.data ? html`<${RuleForm} org=${org} resource=${resource} next=${next} label="Add a rule" done=${() => rules.reload()} />` : null}
    <${Tester} org=${org} resource=${resource} onResult=${(r) => setDecided(r.rule?.id ?? null)} />
    ${dialog}
  </section>`;
}
