// The console's entry point: who is signed in, then the page the hash names.
import { html, render, useEffect, useRef, useState } from "./html.js";
import { get } from "./api.js";
import { parse, redirect, useRoute } from "./router.js";
import { Session, manages } from "./session.js";
import { Layout } from "./components/layout.js";
import { Failed, Loading } from "./components/status.js";
import { PAGES } from "./pages/index.js";

function NoOrganization() {
  return html`<main id="main" class="alone"><h1>No organization yet</h1>
    <p>You are signed in, but no organization has made you a member. Ask its owner to invite you.</p>
    <p><a href="/account">Your account</a></p></main>`;
}

function NotFound({ route }) {
  return html`<h1 tabindex="-1" id="page-title">Not found</h1>
    <p>There is no page <code>${location.hash}</code> here.</p>
    <p><a href=${`#/${route.org ?? ""}`}>Go to the start</a></p>`;
}

function Console({ me }) {
  const route = useRoute();
  const first = useRef(true);
  const org = me.orgs.find((o) => o.id === route.org);
  const manager = org && manages(me, org.id);
  const home = (id) => (manages(me, id) ? "dashboard" : "launcher");

  useEffect(() => {
    // Decide on the address as it is now (it may have changed since this render).
    const now = parse(location.hash);
    const shown = me.orgs.find((o) => o.id === now.org);
    if (!me.orgs.length) return;
    if (!shown) {
      if (!now.org) redirect(me.orgs[0].id, home(me.orgs[0].id));
      return;
    }
    if (!now.page) redirect(shown.id, home(shown.id));
    else if (!manages(me, shown.id) && PAGES[now.page]?.managers) redirect(shown.id, "launcher");
  }, [route.org, route.page]);

  // After a navigation, take keyboard and screen-reader focus to the new page's heading.
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    requestAnimationFrame(() => document.getElementById("page-title")?.focus());
  }, [route.org, route.page, route.id, route.tab]);

  if (!me.orgs.length) return html`<${NoOrganization} />`;
  const pending = !route.org || (org && !route.page) || (org && !manager && PAGES[route.page]?.managers);
  if (pending) return html`<main id="main" class="alone"><${Loading} what="Opening" /></main>`;
  const entry = org && route.page ? PAGES[route.page] : null;
  const allowed = entry && (manager || !entry.managers);
  const Page = allowed ? entry.component : null;
  return html`<${Layout} route=${{ ...route, org: org?.id ?? route.org }} title=${allowed ? entry.title : "Not found"}>
    ${Page ? html`<${Page} key=${`${route.org}/${route.page}`} route=${route} org=${org} />` : html`<${NotFound} route=${route} />`}
  <//>`;
}

function App() {
  const [state, setState] = useState({ me: null, error: null });
  useEffect(() => {
    get("/me").then((me) => setState({ me, error: null }), (error) => setState({ me: null, error }));
  }, []);
  if (state.error) return html`<main id="main" class="alone"><h1>Kokoa</h1><${Failed} error=${state.error} /></main>`;
  if (!state.me) return html`<main id="main" class="alone"><${Loading} what="Loading the console" /></main>`;
  return html`<${Session.Provider} value=${state.me}><${Console} me=${state.me} /><//>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the shell's "Loading" line
render(html`<${App} />`, root);
