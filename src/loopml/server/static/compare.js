"use strict";
(loopml.data("compare-data") || []).forEach((chart, i) => {
  const el = document.getElementById("chart-" + (i + 1));
  const traces = chart.series.map((s) => ({ x: s.steps, y: s.values, mode: "lines", name: s.label }));
  loopml.plot(el, traces, chart.key);
});
