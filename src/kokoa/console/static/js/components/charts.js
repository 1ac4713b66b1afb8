// Charts of allowed and denied requests per resource over time (GET .../access-stats), drawn with
// uPlot, which is loaded only when this tab is shown. Each chart has its numbers in a table too.
import { html, useEffect, useRef, useState } from "../html.js";
import { get, org as orgPath, query } from "../api.js";
import { time, when } from "../format.js";
import { Failed, Loading } from "./status.js";

const RANGES = [
  ["1h", "Last hour", 3600, 60],
  ["6h", "Last 6 hours", 6 * 3600, 300],
  ["24h", "Last 24 hours", 86400, 900],
  ["7d", "Last 7 days", 7 * 86400, 3600],
];

let uPlotModule = null;
/** uPlot and its stylesheet, once. */
async function loadUPlot() {
  if (!uPlotModule) {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = "/static/vendor/uPlot.min.css";
    document.head.append(link);
    uPlotModule = import("../../vendor/uPlot.esm.js").then((m) => m.default);
  }
  return uPlotModule;
}

/** Every bucket from since to now, with zeros where the API listed none. */
function filled(points, since, until, bucket) {
  const byTime = new Map(points.map(([at, allowed, denied]) => [Math.floor(new Date(at).getTime() / 1000), [allowed, denied]]));
  const xs = [];
  const allowed = [];
  const denied = [];
  for (let t = Math.floor(since / bucket) * bucket; t < until; t += bucket) {
    const [a, d] = byTime.get(t) ?? [0, 0];
    xs.push(t);
    allowed.push(a);
    denied.push(d);
  }
  return [xs, allowed, denied];
}

const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function Chart({ series, data, uPlot }) {
  const box = useRef(null);
  useEffect(() => {
    const width = Math.max(280, box.current.clientWidth);
    const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--border"), width: 1 }, ticks: { stroke: cssVar("--border") } };
    const plot = new uPlot({
      width,
      height: 180,
      series: [{}, { label: "allowed", stroke: cssVar("--ok"), width: 2, points: { show: false } }, { label: "denied", stroke: cssVar("--bad"), width: 2, points: { show: false } }],
      axes: [axis, axis],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    }, data, box.current);
    return () => plot.destroy();
  }, [data, uPlot]);
  const total = (i) => data[i].reduce((a, b) => a + b, 0);
  return html`<figure class="chart" aria-labelledby=${`chart-${series.resource_id}`}>
    <h3 id=${`chart-${series.resource_id}`}>${series.name ?? "A deleted resource"}</h3>
    <p class="hint">${total(1)} allowed, ${total(2)} denied.</p>
    <div ref=${box} aria-hidden="true"></div>
    <details><summary>The numbers<span class="visually-hidden"> of ${series.name ?? "a deleted resource"}</span></summary>
      <table><thead><tr><th scope="col">From</th><th scope="col" class="num">Allowed</th><th scope="col" class="num">Denied</th></tr></thead>
      <tbody>${series.points.map(([at, a, d]) => html`<tr><td><time datetime=${at} title=${when(at)}>${time(at)}</time></td><td class="num">${a}</td><td class="num">${d}</td></tr>`)}</tbody></table>
    </details>
  </figure>`;
}

export function Charts({ org }) {
  const [range, setRange] = useState("1h");
  const [state, setState] = useState({ stats: null, error: null, uPlot: null });
  const [, , seconds, bucket] = RANGES.find(([id]) => id === range);
  useEffect(() => {
    const until = Math.floor(Date.now() / 1000);
    const since = until - seconds;
    setState((old) => ({ ...old, stats: null }));
    const iso = (t) => new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
    Promise.all([get(orgPath(org.id, `/access-stats${query({ since: iso(since), bucket })}`)), loadUPlot()])
      .then(([stats, uPlot]) => setState({ stats: { ...stats, since, until }, error: null, uPlot }))
      .catch((error) => setState((old) => ({ ...old, error })));
  }, [org.id, range]);
  const { stats, error, uPlot } = state;
  return html`<section aria-labelledby="charts-title"><h2 id="charts-title">Requests per resource</h2>
    <div class="field"><label for="chart-range">Period</label>
      <select id="chart-range" value=${range} onChange=${(e) => setRange(e.target.value)}>
        ${RANGES.map(([id, label]) => html`<option value=${id}>${label}</option>`)}
      </select></div>
    ${error ? html`<${Failed} error=${error} />` : null}
    ${!stats && !error ? html`<${Loading} what="Loading the numbers" />` : null}
    ${stats && !stats.series.length ? html`<p class="empty">No request in this period.</p>` : null}
    ${stats ? stats.series.map((s) => html`<${Chart} key=${`${range}-${s.resource_id}`} series=${s} uPlot=${uPlot}
      data=${filled(s.points, stats.since, stats.until, stats.bucket_seconds)} />`) : null}
  </section>`;
}
