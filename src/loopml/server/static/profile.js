"use strict";
(loopml.data("profile-data") || []).forEach((col) => {
  const el = document.querySelector('.chart[data-column="' + CSS.escape(col.name) + '"]');
  const t = loopml.columnTrace(col, col.name);
  if (el && t) loopml.plot(el, [t], col.name + " (share of rows)");
});
(loopml.data("drift-data") || []).forEach((c, i) => {
  const el = document.getElementById("drift-" + (i + 1));
  const traces = [loopml.columnTrace(c.base, "base"), loopml.columnTrace(c.other, "other")].filter(Boolean);
  if (el && traces.length) loopml.plot(el, traces, c.column, { barmode: "overlay" });
});
