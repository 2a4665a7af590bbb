// The run page's live part: one EventSource on the run's stream; each `view` message replaces the panels the
// server rendered and feeds the charts (Chart.js). No polling: the server pushes when the run store changes.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const picker = document.getElementById("chart-service");
  const initial = JSON.parse(document.getElementById("initial").textContent);
  let charts = initial.charts;
  let chosen = null; // the service a person picked; otherwise follow the server's focus
  let focus = initial.focus;

  function lineChart(id, title, unit) {
    const canvas = document.getElementById(id);
    return new Chart(canvas, {
      type: "line",
      data: { labels: [], datasets: [] },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, spanGaps: true,
        plugins: { title: { display: true, text: title } },
        scales: { x: { type: "linear", title: { display: true, text: "seconds since the run started" } },
                  y: { title: { display: true, text: unit } } },
      },
    });
  }
  const errors = lineChart("chart-errors", "error rate", "%");
  const latency = lineChart("chart-latency", "p95 latency", "ms");
  const evidence = lineChart("chart-evidence", "sequential test on errors: evidence against bounds", "log LR");

  function points(t, ys, scale) {
    return t.map((x, i) => ({ x: x, y: ys[i] == null ? null : ys[i] * scale }));
  }
  function flat(t, y) {
    return y == null || t.length === 0 ? [] : [{ x: t[0], y: y }, { x: t[t.length - 1], y: y }];
  }
  function set(chart, datasets) {
    chart.data.datasets = datasets;
    chart.update("none");
  }

  function draw() {
    const names = Object.keys(charts).sort();
    if (picker.options.length !== names.length) {
      picker.replaceChildren(...names.map((n) => new Option(n, n)));
    }
    const name = chosen || focus || names[0];
    if (!name || !charts[name]) return;
    picker.value = name;
    const s = charts[name];
    set(errors, [
      { label: "canary", data: points(s.t, s.canary_error_rate, 100), borderColor: "#d62728" },
      { label: "stable", data: points(s.t, s.stable_error_rate, 100), borderColor: "#1f77b4" },
    ]);
    set(latency, [
      { label: "canary p95", data: points(s.t, s.canary_p95_ms, 1), borderColor: "#d62728" },
      { label: "stable p95", data: points(s.t, s.stable_p95_ms, 1), borderColor: "#1f77b4" },
    ]);
    set(evidence, [
      { label: "primary evidence", data: points(s.t, s.llr, 1), borderColor: "#9467bd" },
      { label: "severe evidence", data: points(s.t, s.severe_llr, 1), borderColor: "#ff7f0e" },
      { label: "primary fail bound", data: flat(s.t, s.fail_bound), borderColor: "#9467bd", borderDash: [6, 4], pointRadius: 0 },
      { label: "severe fail bound", data: flat(s.t, s.severe_fail_bound), borderColor: "#ff7f0e", borderDash: [6, 4], pointRadius: 0 },
      { label: "pass bound", data: flat(s.t, s.pass_bound), borderColor: "#2ca02c", borderDash: [6, 4], pointRadius: 0 },
    ]);
    document.body.dataset.chartPoints = String(s.t.length);
  }

  picker.addEventListener("change", () => { chosen = picker.value; draw(); });
  draw();

  // A panel is replaced only when its HTML changed, so what did not change (the buttons, a settled table) stays
  // the same element under a person's pointer while looks keep arriving.
  const shown = {};
  function apply(data) {
    for (const [name, html] of Object.entries(data.panels)) {
      const panel = document.getElementById("panel-" + name);
      if (panel && shown[name] !== html) {
        panel.innerHTML = html;
        shown[name] = html;
      }
    }
    const phase = document.getElementById("phase");
    phase.textContent = data.phase;
    phase.className = "phase-" + data.phase;
    charts = data.charts;
    focus = data.focus;
    draw();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  if (initial.terminal) { live.dataset.state = "ended"; live.textContent = "run ended"; return; }
  const source = new EventSource(live.dataset.stream);
  source.addEventListener("open", () => { live.dataset.state = "open"; live.textContent = "live"; });
  source.addEventListener("view", (e) => apply(JSON.parse(e.data)));
  source.addEventListener("end", () => {
    source.close();
    live.dataset.state = "ended";
    live.textContent = "run ended";
  });
  source.addEventListener("error", () => {
    if (live.dataset.state !== "ended") { live.dataset.state = "reconnecting"; live.textContent = "reconnecting…"; }
  });
})();
