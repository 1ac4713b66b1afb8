// Forms that show the API's problem+json errors next to the fields they name.
//
// useForm(initial) keeps the values, the errors by field and the general error; <Field> renders a
// labelled control with aria-invalid and aria-describedby pointing at its hint and error;
// <FormErrors> lists what no field on the form took (and the problem's detail).
import { html, useEffect, useId, useRef, useState } from "../html.js";
import { ApiError } from "../api.js";

export function useForm(initial = {}) {
  const [values, setValues] = useState(initial);
  const [errors, setErrors] = useState({});
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const ref = useRef(null);
  const shown = new Set();

  const set = (name, value) => setValues((old) => ({ ...old, [name]: value }));
  const clear = () => {
    setErrors({});
    setProblem(null);
  };

  /** Run `action` (an API call); on an ApiError show its errors and move focus to the first. */
  async function submit(event, action) {
    event?.preventDefault();
    if (busy) return undefined;
    setBusy(true);
    clear();
    try {
      return await action(values);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setErrors(error.fields);
      setProblem(error);
      return undefined;
    } finally {
      setBusy(false);
    }
  }

  useEffect(() => {
    if (!problem || !ref.current) return;
    const target = ref.current.querySelector('[aria-invalid="true"]') ?? ref.current.querySelector(".form-errors");
    target?.focus();
  }, [problem]);

  return { values, set, setValues, errors, setErrors, problem, busy, submit, clear, ref, shown };
}

/** The errors of a field, with those of its items (auth_email_allow[2], tags.0) and parts (health_check.path). */
export function errorOf(errors, name) {
  const parts = [];
  for (const [field, message] of Object.entries(errors)) {
    if (field === name) parts.unshift(message);
    else if (field.startsWith(`${name}.`) || field.startsWith(`${name}[`)) {
      const rest = field.slice(name.length).replace(/^\./, "");
      const item = /^\[?(\d+)\]?$/.exec(rest);
      parts.push(`${item ? `Item ${Number(item[1]) + 1}` : rest}: ${message}`);
    }
  }
  return parts.length ? parts.join(" ") : null;
}

function describedBy(...ids) {
  const list = ids.filter(Boolean).join(" ");
  return list || undefined;
}

/**
 * A labelled input, select or textarea bound to form.values[name]. `type` may be text, email,
 * password, number, datetime-local, checkbox, select (with `options` [[value, label]]) or textarea.
 */
export function Field({ form, name, label, type = "text", hint, options = [], required, ...rest }) {
  const id = useId();
  form.shown.add(name);
  const error = errorOf(form.errors, name);
  const errorId = error ? `${id}-error` : null;
  const hintId = hint ? `${id}-hint` : null;
  const common = {
    id,
    name,
    required,
    "aria-invalid": error ? "true" : undefined,
    "aria-describedby": describedBy(hintId, errorId),
    ...rest,
  };
  const value = form.values[name] ?? "";
  const onInput = (e) => form.set(name, type === "number" && e.target.value !== "" ? Number(e.target.value) : e.target.value);
  const hintEl = hint ? html`<p class="hint" id=${hintId}>${hint}</p>` : null;
  const errorEl = error ? html`<p class="field-error" id=${errorId}>${error}</p>` : null;
  if (type === "checkbox") {
    return html`<div class="field check">
      <input type="checkbox" ...${common} checked=${!!form.values[name]} onChange=${(e) => form.set(name, e.target.checked)} />
      <label for=${id}>${label}</label>${hintEl}${errorEl}
    </div>`;
  }
  let control;
  if (type === "select") {
    control = html`<select ...${common} value=${value} onChange=${onInput}>
      ${options.map(([v, text]) => html`<option value=${v}>${text}</option>`)}
    </select>`;
  } else if (type === "textarea") {
    control = html`<textarea ...${common} value=${value} onInput=${onInput} rows=${rest.rows ?? 4}></textarea>`;
  } else {
    control = html`<input type=${type} ...${common} value=${value} onInput=${onInput} />`;
  }
  return html`<div class="field"><label for=${id}>${label}</label>${control}${hintEl}${errorEl}</div>`;
}

/** The problem's detail and the errors of fields this form does not show (put it after the fields). */
export function FormErrors({ form }) {
  const problem = form.problem;
  if (!problem) return null;
  const taken = (field) => [...form.shown].some((name) => errorOf({ [field]: 1 }, name));
  const others = Object.entries(form.errors).filter(([name]) => !taken(name));
  const general = [...problem.general, ...others.map(([name, message]) => `${name}: ${message}`)];
  const named = Object.keys(form.errors).length - others.length;
  return html`<div class="notice error form-errors" role="alert" tabindex="-1">
    <p>${named ? "Please correct the fields marked above." : problem.message}</p>
    ${general.length ? html`<ul>${general.map((m) => html`<li>${m}</li>`)}</ul>` : null}
  </div>`;
}

/** A <form> wired to a useForm, with its submit button and a busy state. */
export function Form({ form, onSubmit, submit = "Save", children, label, secondary }) {
  return html`<form ref=${form.ref} onSubmit=${(e) => form.submit(e, onSubmit)} aria-label=${label} novalidate>
    ${children}
    <${FormErrors} form=${form} />
    <div class="actions">
      <button type="submit" disabled=${form.busy}>${form.busy ? "Working…" : submit}</button>
      ${secondary}
    </div>
  </form>`;
}

/** A group of radio buttons (a fieldset with its legend) bound to form.values[name]. */
export function Radios({ form, name, legend, options, hint }) {
  const id = useId();
  form.shown.add(name);
  const error = errorOf(form.errors, name);
  return html`<fieldset class="radios" aria-describedby=${describedBy(hint ? `${id}-hint` : null, error ? `${id}-error` : null)}>
    <legend>${legend}</legend>
    ${hint ? html`<p class="hint" id=${`${id}-hint`}>${hint}</p>` : null}
    ${options.map(([value, label, detail], i) => html`<div class="field check">
      <input type="radio" id=${`${id}-${i}`} name=${`${id}-${name}`} checked=${form.values[name] === value}
        aria-invalid=${error ? "true" : undefined} onChange=${() => form.set(name, value)} />
      <label for=${`${id}-${i}`}>${label}</label>${detail ? html`<p class="hint">${detail}</p>` : null}
    </div>`)}
    ${error ? html`<p class="field-error" id=${`${id}-error`}>${error}</p>` : null}
  </fieldset>`;
}
