// Who is signed in (GET /me), shared with every page through a context.
import { createContext, useContext } from "./html.js";

export const Session = createContext(null);
export const useSession = () => useContext(Session);

/** Owners and Admins manage an organization; every other role gets the launcher and their account. */
export const MANAGERS = new Set(["Owner", "Admin"]);

export function roleIn(me, orgId) {
  return me?.orgs.find((o) => o.id === orgId)?.role ?? null;
}

export function manages(me, orgId) {
  if (me?.kind === "api_key") return me.orgs.some((o) => o.id === orgId);
  return MANAGERS.has(roleIn(me, orgId));
}
