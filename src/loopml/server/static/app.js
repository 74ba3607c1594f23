// Chart helpers shared by the pages; each page's own script passes its embedded data here.
"use strict";
// Plotly's bundle is large: it is fetched once the page has loaded, so that the first
// paint (tables, and charts the server drew) does not wait for it.
const PLOTLY_URL = document.currentScript.dataset.plotly;
const plotlyWaiting = [];
let plotlyRequested = false;

function requestPlotly() {
  const script = document.createElement("script");
  script.src = PLOTLY_URL;
  script.onload = () => plotlyWaiting.splice(0).forEach((draw) => draw());
  script.onerror = () => console.error("could not load Plotly from " + PLOTLY_URL);
  document.head.appendChild(script);
}

const loopml = {
  // Run draw() once Plotly is there.
  withPlotly(draw) {
    if (window.Plotly) return draw();
    plotlyWaiting.push(draw);
    if (plotlyRequested) return;
    plotlyRequested = true;
    if (document.readyState === "complete") setTimeout(requestPlotly, 0);
    else window.addEventListener("load", () => setTimeout(requestPlotly, 0));
  },
  layout(title) {
    return { title: { text: title, font: { size: 13 } }, margin: { l: 50, r: 10, t: 32, b: 36 },
             showlegend: true, legend: { orientation: "h", y: -0.2 } };
  },
  data(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  },
  // One metric series; bucketed histories also draw their min/max envelope.
  traces(series, label) {
    const out = [];
    if (series.min && series.max) {
      out.push({ x: series.steps, y: series.max, mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" });
      out.push({ x: series.steps, y: series.min, mode: "lines", line: { width: 0 }, fill: "tonexty",
                 fillcolor: "rgba(37,99,235,0.15)", name: (label || series.key) + " min–max" });
    }
    out.push({ x: series.steps, y: series.values, mode: "lines", name: label || series.key });
    return out;
  },
  // Replace el's content (a server-drawn sketch, if any) with an interactive chart.
  plot(el, traces, title, extraLayout) {
    loopml.withPlotly(() => {
      el.replaceChildren();
      Plotly.newPlot(el, traces, Object.assign(loopml.layout(title), extraLayout || {}),
                     { displaylogo: false, responsive: true });
    });
  },
  // A profile column as bars: a numeric histogram or the value counts of a category.
  columnTrace(col, name) {
    if (col.numeric && col.numeric.histogram) {
      const h = col.numeric.histogram, e = h.edges, total = h.counts.reduce((a, b) => a + b, 0) || 1;
      const mids = h.counts.map((_, i) => (e[i] + e[i + 1]) / 2);
      return { type: "bar", x: mids, y: h.counts.map((c) => c / total), name: name, opacity: 0.6 };
    }
    if (col.frequencies) {
      const entries = Object.entries(col.frequencies.counts).slice(0, 30);
      const total = col.frequencies.counts ? Object.values(col.frequencies.counts).reduce((a, b) => a + b, 0) + col.frequencies.other : 1;
      return { type: "bar", x: entries.map((kv) => kv[0]), y: entries.map((kv) => kv[1] / (total || 1)), name: name, opacity: 0.6 };
    }
    return null;
  },
};
