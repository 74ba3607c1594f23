"use strict";
(loopml.data("chart-data") || []).forEach((c, i) => {
  const el = document.getElementById("chart-" + (i + 1));
  loopml.plot(el, loopml.traces(c), el.dataset.title);
});
