// Hash routes: #/<org>/<page>/<id>/<tab>. The server serves only "/", so everything after # is ours.
import { useEffect, useState } from "./html.js";

export function parse(hash) {
  const parts = hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
  return { org: parts[0] ?? null, page: parts[1] ?? null, id: parts[2] ?? null, tab: parts[3] ?? null };
}

/** A link to a page of the console: href("org_1", "resources", "res_2") is #/org_1/resources/res_2. */
export const href = (...parts) => `#/${parts.filter((p) => p != null && p !== "").map(encodeURIComponent).join("/")}`;

export function go(...parts) {
  location.hash = href(...parts);
}

/** Replace the current entry (no history step), for redirects such as / to the first organization. */
export function redirect(...parts) {
  history.replaceState(null, "", href(...parts));
  dispatchEvent(new HashChangeEvent("hashchange"));
}

export function useRoute() {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parse(location.hash));
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}
