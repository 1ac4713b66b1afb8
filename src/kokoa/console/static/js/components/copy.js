// A button that copies a text (a command, a link, a secret) and says so.
import { html, useState } from "../html.js";

async function write(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (or an old browser): copy from a hidden textarea.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}

export function CopyButton({ text, label = "Copy", what }) {
  const [state, setState] = useState("idle");
  async function copy() {
    setState((await write(text)) ? "copied" : "failed");
    setTimeout(() => setState("idle"), 2500);
  }
  const shown = state === "copied" ? "Copied" : state === "failed" ? "Copy failed" : label;
  return html`<button type="button" class="secondary copy" onClick=${copy}
      aria-label=${what ? `${label} ${what}` : undefined}>${shown}</button>
    <span class="visually-hidden" role="status">${state === "copied" ? `Copied ${what ?? ""} to the clipboard` : ""}</span>`;
}

/** A text to copy, shown in full (monospace), with its copy button. */
export function Copyable({ text, what, label }) {
  return html`<div class="copyable">
    <pre tabindex="0" aria-label=${what}><code>${text}</code></pre>
    <${CopyButton} text=${text} what=${what} label=${label} />
  </div>`;
}

/** A secret or link shown once: say so, and offer to copy it. */
export function ShownOnce({ title, text, what, children }) {
  return html`<section class="notice warn shown-once" aria-label=${title}>
    <h3>${title}</h3>
    <p>Shown only now: copy it before you leave this page. The gateway keeps only a hash.</p>
    <${Copyable} text=${text} what=${what} />
    ${children}
  </section>`;
}
