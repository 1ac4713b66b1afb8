// The frame around every page: a skip link, the banner (organization switcher, account, sign out),
// the navigation and the main region, with a polite live region for announcements.
import { html, useEffect } from "../html.js";
import { csrfToken } from "../api.js";
import { go, href } from "../router.js";
import { manages, useSession } from "../session.js";

const ADMIN_PAGES = [
  ["dashboard", "Dashboard"],
  ["sites", "Sites"],
  ["resources", "Resources"],
  ["people", "People"],
  ["logs", "Logs"],
  ["inspector", "Inspector"],
  ["launcher", "Launcher"],
];
const MEMBER_PAGES = [["launcher", "Your resources"]];

function OrgSwitcher({ orgId, page }) {
  const me = useSession();
  if (me.orgs.length < 2) {
    const only = me.orgs[0];
    return only ? html`<p class="org-name"><span class="visually-hidden">Organization: </span>${only.name}</p>` : null;
  }
  function change(event) {
    const next = event.target.value;
    // Keep the kind of page (a list) but not an object of the other organization.
    const target = manages(me, next) ? page ?? "dashboard" : "launcher";
    go(next, target);
  }
  return html`<div class="org-switch">
    <label for="org-switch">Organization</label>
    <select id="org-switch" value=${orgId} onChange=${change}>
      ${me.orgs.map((o) => html`<option value=${o.id}>${o.name}${o.role ? ` (${o.role})` : ""}</option>`)}
    </select>
  </div>`;
}

function SignOut() {
  return html`<form method="post" action="/logout" class="sign-out">
    <input type="hidden" name="csrf" value=${csrfToken()} />
    <button type="submit" class="secondary">Sign out</button>
  </form>`;
}

export function Layout({ route, title, children }) {
  const me = useSession();
  const pages = manages(me, route.org) ? ADMIN_PAGES : MEMBER_PAGES;
  useEffect(() => {
    document.title = title ? `${title} · Kokoa` : "Kokoa";
  }, [title]);
  return html`<a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main").focus(); }}>Skip to content</a>
    <header class="banner">
      <a class="brand" href=${href(route.org, pages[0][0])}><img src="/static/kokoa.svg" alt="" width="28" height="28" /><span>Kokoa</span></a>
      <${OrgSwitcher} orgId=${route.org} page=${route.page} />
      <div class="who">
        <a href="/account" title="Your account: password, second factor, sessions">${me.user?.email ?? me.key?.prefix ?? "Account"}</a>
        <${SignOut} />
      </div>
    </header>
    <nav class="pages" aria-label="Console">
      <ul>
        ${pages.map(([page, label]) => html`<li><a href=${href(route.org, page)} aria-current=${route.page === page ? "page" : undefined}>${label}</a></li>`)}
        <li><a href="/account">Account</a></li>
      </ul>
    </nav>
    <main id="main" tabindex="-1">${children}</main>
    <div id="announcer" class="visually-hidden" role="status" aria-live="polite"></div>`;
}
