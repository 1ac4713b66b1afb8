// Every page of the console by the name in its route (#/<org>/<name>/...). `managers`: Owners and
// Admins only (others are sent to the launcher).
import { Dashboard } from "./dashboard.js";
import { Inspector } from "./inspector.js";
import { Launcher } from "./launcher.js";
import { Logs } from "./logs.js";
import { People } from "./people.js";
import { Resources } from "./resources.js";
import { Sites } from "./sites.js";

export const PAGES = {
  dashboard: { title: "Dashboard", component: Dashboard, managers: true },
  sites: { title: "Sites", component: Sites, managers: true },
  resources: { title: "Resources", component: Resources, managers: true },
  people: { title: "People", component: People, managers: true },
  logs: { title: "Logs", component: Logs, managers: true },
  inspector: { title: "Inspector", component: Inspector, managers: true },
  launcher: { title: "Your resources", component: Launcher },
};
