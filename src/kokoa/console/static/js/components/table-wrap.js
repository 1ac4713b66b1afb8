// A table's frame: on a narrow screen a wide table scrolls sideways inside it, and then the frame
// becomes a focusable, labelled region, so that keyboard users can scroll it too.
import { html, useEffect, useRef, useState } from "../html.js";

export function TableWrap({ label, children }) {
  const ref = useRef(null);
  const [scrolls, setScrolls] = useState(false);
  useEffect(() => {
    const frame = ref.current;
    const check = () => setScrolls(frame.scrollWidth > frame.clientWidth + 1);
    check();
    const observer = new ResizeObserver(check);
    observer.observe(frame);
    for (const child of frame.children) observer.observe(child);
    return () => observer.disconnect();
  }, []);
  return html`<div ref=${ref} class="table-wrap" tabindex=${scrolls ? "0" : undefined} role=${scrolls ? "region" : undefined}
    aria-label=${scrolls ? `${label} (scrolls sideways)` : undefined}>${children}</div>`;
}
