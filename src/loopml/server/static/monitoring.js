"use strict";
(function () {
  const rows = loopml.data("monitoring-data") || [];
  if (!rows.length) return;
  const x = rows.map((r) => r.start || r.window_start || r.end);
  const keys = Object.keys(rows[0]).filter((k) => rows.every((r) => r[k] === null || typeof r[k] === "number"));
  const traces = keys.map((k) => ({ x: x, y: rows.map((r) => r[k]), mode: "lines+markers", name: k }));
  loopml.plot(document.getElementById("monitoring-chart"), traces, "windows over time");
})();
