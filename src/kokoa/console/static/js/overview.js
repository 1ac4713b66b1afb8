// The organization's live picture: GET .../overview kept current by its events stream. Shared by the
// dashboard, the sites and the resources pages.
import { useRef, useState } from "./html.js";
import { get, org as orgPath } from "./api.js";
import { useEvents } from "./events.js";

function withSite(overview, site) {
  const known = overview.sites.some((s) => s.id === site.id);
  const sites = known ? overview.sites.map((s) => (s.id === site.id ? site : s)) : [...overview.sites, site];
  // Targets of the site are online with it (their health comes by its own events).
  const resources = overview.resources.map((r) => ({
    ...r,
    targets: r.targets.map((t) => (t.site_id === site.id ? { ...t, online: site.online, healthy: site.online ? t.healthy : null } : t)),
  }));
  return { ...overview, sites, resources };
}

function withHealth(overview, health) {
  return {
    ...overview,
    resources: overview.resources.map((r) => (r.id !== health.resource_id ? r : {
      ...r,
      targets: r.targets.map((t) => (t.id === health.id ? { ...t, ...health } : t)),
    })),
  };
}

function withAccess(overview, entry) {
  const last = overview.last_hour;
  const counted = entry.kind === "request" || entry.kind === "connect";
  const denied = counted && entry.outcome === "deny";
  const signin = entry.kind === "signin" || entry.kind === "share";
  return {
    ...overview,
    last_hour: counted ? { ...last, requests: last.requests + (entry.count ?? 1), denials: last.denials + (denied ? entry.count ?? 1 : 0) } : last,
    signins: signin ? [entry, ...overview.signins].slice(0, 10) : overview.signins,
  };
}

/**
 * The overview of `orgId`, live. `onEvent(name, data, before)` is told of each event (for
 * announcements). Returns {overview, state, error}.
 */
export function useOverview(orgId, onEvent) {
  const [overview, setOverview] = useState(null);
  const [error, setError] = useState(null);
  const apply = (name, change) => (data) => {
    setOverview((old) => {
      onEvent?.(name, data, old);
      return old && change ? change(old, data) : old;
    });
  };
  const refetch = useRef(null);
  const state = useEvents(orgPath(orgId, "/events"), {
    overview: (data) => {
      setError(null);
      setOverview(data);
    },
    site: apply("site", withSite),
    health: apply("health", withHealth),
    access: apply("access", withAccess),
    changed: (data) => {
      onEvent?.("changed", data, null);
      // The configuration changed: read the picture again (once for a burst of changes).
      clearTimeout(refetch.current);
      // Only the configuration's part is taken: the last hour's numbers and sign-ins stay as the live
      // events made them (the store's copy of the access log lags them by a second or so).
      refetch.current = setTimeout(() => get(orgPath(orgId, "/overview")).then(
        (fresh) => setOverview((old) => (old ? { ...old, sites: fresh.sites, resources: fresh.resources } : fresh)),
        setError,
      ), 150);
    },
  });
  return { overview, state, error };
}
