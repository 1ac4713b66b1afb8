// A modal confirmation (the native <dialog>: focus kept inside, Escape cancels).
import { html, useEffect, useId, useRef, useState } from "../html.js";

/**
 * useConfirm() gives [element, ask]; `await ask({title, body, confirm, danger})` is true when the
 * user confirms. Render `element` once in the page.
 */
export function useConfirm() {
  const [request, setRequest] = useState(null);
  const ask = (options) => new Promise((resolve) => setRequest({ ...options, resolve }));
  const done = (answer) => {
    request?.resolve(answer);
    setRequest(null);
  };
  return [html`<${Confirm} request=${request} done=${done} />`, ask];
}

function Confirm({ request, done }) {
  const ref = useRef(null);
  const id = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (request && !dialog.open) dialog.showModal();
    if (!request && dialog.open) dialog.close();
  }, [request]);
  return html`<dialog ref=${ref} class="confirm" aria-labelledby=${`${id}-title`} aria-describedby=${`${id}-body`}
      onCancel=${(e) => { e.preventDefault(); done(false); }}>
    ${request ? html`<h2 id=${`${id}-title`}>${request.title}</h2>
      <div id=${`${id}-body`}>${request.body}</div>
      <div class="actions">
        <button type="button" class=${request.danger === false ? "" : "danger"} onClick=${() => done(true)}>${request.confirm ?? "Confirm"}</button>
        <button type="button" class="secondary" autofocus onClick=${() => done(false)}>Cancel</button>
      </div>` : null}
  </dialog>`;
}
