// The console's entry point (a placeholder until the pages land).
import { h, render } from "../vendor/preact.module.js";
import htm from "../vendor/htm.module.js";

const html = htm.bind(h);
render(html`<main><h1>Kokoa</h1><p>The console is loading its pages.</p></main>`, document.getElementById("app"));
