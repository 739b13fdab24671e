// The run page's charts: uPlot draws the server's min/max buckets (trace.json) and appends each
// point the live stream (htmx's SSE extension, event "points") brings.
(function () {
  "use strict";
  const box = document.getElementById("trace");
  if (!box) return;
  const runId = box.dataset.run;
  const REBUCKET = 3600; // past this many columns, ask the server to downsample again
  const panels = [
    {key: "E", label: "E (V)", color: "#1d3557"},
    {key: "I", label: "I (mA)", color: "#e63946"},
    {key: "P", label: "P (MPa)", color: "#2a9d8f"},
  ];
  let data = null;           // {t: [], E: [[lo], [hi]], I: ..., P: ...}
  let lastId = 0, nPoints = 0, pending = [], loading = false;
  const received = {};       // point id -> arrival time (ms since the epoch), for benchmarks
  window.labctlTrace = {received: received};
  const plots = {};

  function makePlots() {
    for (const p of panels) {
      const div = document.createElement("div");
      div.className = "panel panel-" + p.key;
      box.appendChild(div);
      plots[p.key] = new uPlot({
        width: Math.min(1100, box.clientWidth || 900), height: 180,
        scales: {x: {time: false}},
        axes: [{label: "run time (s)"}, {label: p.label, size: 70}],
        series: [{label: "t (s)"}, {label: p.label + " min", stroke: p.color},
                 {label: p.label + " max", stroke: p.color}],
        bands: [{series: [2, 1], fill: p.color + "33"}],
      }, [[], [], []], div);
    }
  }

  function redraw() {
    for (const p of panels) plots[p.key].setData([data.t, data[p.key][0], data[p.key][1]]);
    box.dataset.points = String(nPoints);
    box.dataset.columns = String(data.t.length);
    box.dataset.lastId = String(lastId);
  }

  function load() {
    loading = true;
    fetch("/runs/" + runId + "/trace.json").then(r => r.json()).then(tr => {
      data = {t: tr.t_lo, E: [tr.E_lo, tr.E_hi], I: [tr.I_lo, tr.I_hi], P: [tr.P_lo, tr.P_hi]};
      lastId = tr.last_point_id; nPoints = tr.n_points; loading = false;
      const queued = pending; pending = [];
      append(queued);
      redraw();
    });
  }

  function append(rows) {
    for (const [id, t, E, I, P] of rows) {
      if (id <= lastId) continue;
      data.t.push(t);
      data.E[0].push(E); data.E[1].push(E);
      data.I[0].push(I); data.I[1].push(I);
      data.P[0].push(P); data.P[1].push(P);
      lastId = id; nPoints += 1;
    }
  }

  document.getElementById("points-feed").addEventListener("htmx:sseBeforeMessage", ev => {
    ev.preventDefault(); // JSON for the charts, nothing to swap into the page
    const rows = JSON.parse(ev.detail.data);
    const now = Date.now();
    for (const row of rows) received[row[0]] = now;
    if (loading || data === null) { pending.push(...rows); return; }
    append(rows);
    if (data.t.length > REBUCKET) load(); else redraw();
  });

  makePlots();
  load();
})();
