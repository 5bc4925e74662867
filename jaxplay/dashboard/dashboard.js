// The jaxplay dashboard's page script: draws a study's plots with Plotly from the JSON the
// server embedded, follows the study (polls its version token, then fetches what changed), and
// makes the trials table sortable and filterable. Every string from the store arrives
// HTML-escaped by the server (jaxplay/dashboard/data.py), ready for Plotly and for innerHTML.
"use strict";

const COLORS = { feasible: "#1f77b4", top: "#2ca02c", near: "#98df8a", infeasible: "#d62728",
                 running: "#d68910", other: "#8c8c8c" };
const TOP_COLORS = ["#2ca02c", "#9467bd", "#ff7f0e"];
// The probe's learning rates, smallest first (as the report's): blue for 1x, red for the most.
const MULTIPLE_COLORS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b",
                         "#e377c2", "#bcbd22"];
// A short tool bar (zoom, pan, reset, save), upright at the right so it never covers a title.
const CONFIG = {
  displaylogo: false, responsive: true,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d",
                           "hoverClosestCartesian", "hoverCompareCartesian", "toggleSpikelines"],
};
const POLL_MS = 2000;      // a running study: new evaluations appear within about this
const IDLE_POLL_MS = 10000; // a study with nothing running or pending

function plotDiv(id, wide) {
  let div = document.getElementById(id);
  if (!div) {
    const figure = document.createElement("figure");
    if (wide) figure.className = "wide";
    div = document.createElement("div");
    div.id = id;
    div.className = wide ? "plot wide" : "plot";
    figure.appendChild(div);
    document.getElementById("figures").appendChild(figure);
  }
  return div;
}

// Titles left of the tool bar, legends below the axis title.
function layout(title, rest) {
  return { title: { text: title, font: { size: 13 }, x: 0.01, xanchor: "left" },
           margin: { t: 46, r: 40, b: 100 }, hovermode: "closest", modebar: { orientation: "v" },
           legend: { orientation: "h", y: -0.32, x: 0 }, ...rest };
}

function bestLabel(p) {
  return `best ${p.objective} (${p.mode === "min" ? "lower" : "higher"} is better)`;
}

function axisPlot(p, axis, i) {
  const div = plotDiv(`axis-${i}`, false);
  const near = p.near_best;
  const traces = [];
  for (const [kind, symbol, size, name] of [
    ["feasible", "circle", 8, "feasible trials"], ["near", "circle", 9, "near-best trials"],
    ["top", "star", 14, "top 3 trials"], ["infeasible", "x", 9, "infeasible trials (at a cap)"]]) {
    const pts = axis.points.filter((q) => q.kind === kind);
    if (!pts.length) continue;
    const edge = kind === "top" ? { width: 1 } : kind === "near" ? { width: 1, color: COLORS.top }
      : { width: 0 };
    traces.push({
      type: "scatter", mode: "markers", name,
      x: pts.map((q) => q.x), y: pts.map((q) => q.y), customdata: pts.map((q) => q.trial),
      hovertext: pts.map((q) => p.text[q.trial] +
        (near && near.trials.includes(q.trial) ? `<br>${near.text}` : "")),
      hoverinfo: "text", marker: { color: COLORS[kind], symbol, size, line: edge },
    });
  }
  const shapes = [];
  // The good region (playbook: how many points are in it): from the best to epsilon beyond it.
  if (near) {
    shapes.push({ type: "rect", xref: "paper", yref: "y", x0: 0, x1: 1, y0: near.best,
                  y1: near.bound, fillcolor: COLORS.top, opacity: 0.12, line: { width: 0 },
                  layer: "below" });
  }
  if (axis.bounds) {
    for (const b of axis.bounds) {
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: b, x1: b, y0: 0, y1: 1,
                    line: { dash: "dash", color: "#555", width: 1 } });
    }
  }
  if (p.cap !== null && axis.points.some((q) => q.kind === "infeasible")) {
    shapes.push({ type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: p.cap, y1: p.cap,
                  line: { dash: "dot", color: COLORS.infeasible, width: 1 } });
  }
  // No zero line: at a category axis's first value or a range's 0 it reads as a search bound.
  const xaxis = { title: { text: axis.path }, type: axis.log ? "log" : "linear", zeroline: false };
  if (axis.categories) {  // every value of the space, tried or not
    xaxis.tickvals = axis.categories.map((_, k) => k);
    xaxis.ticktext = axis.categories;
    xaxis.range = [-0.5, axis.categories.length - 0.5];
  }
  const unfinished = axis.unfinished ? ` (${axis.unfinished} unfinished not shown)` : "";
  // The count of the good region on a line of its own: the first is long already.
  const close = near ? `<br>${axis.near} within ${near.epsilon_text} of the best` : "";
  const title = `${axis.path} (${axis.role}): ${axis.points.length} finished trials${unfinished}${close}`;
  Plotly.react(div, traces, layout(title, {
    xaxis, yaxis: { title: { text: bestLabel(p) } }, shapes,
    margin: { t: near ? 62 : 46, r: 40, b: 100 },
  }), CONFIG);
  return div;
}

function isolationPlot(p, iso, i) {
  const div = plotDiv(`isolation-${i}`, false);
  const over = iso.over.length ? iso.over.join(", ") : "no nuisance hyperparameters";
  const xaxis = { title: { text: iso.path }, type: iso.log ? "log" : "linear", zeroline: false };
  if (iso.categories) {
    xaxis.tickvals = iso.categories.map((_, k) => k);
    xaxis.ticktext = iso.categories;
    xaxis.range = [-0.5, iso.categories.length - 0.5];
  }
  Plotly.react(div, [{
    type: "scatter", mode: iso.connect ? "lines+markers+text" : "markers+text",
    x: iso.points.map((q) => q.x), y: iso.points.map((q) => q.y),
    text: iso.points.map((q) => q.label), textposition: "top center",
    customdata: iso.points.map((q) => q.trial), hovertext: iso.points.map((q) => q.text),
    hoverinfo: "text", marker: { size: 9, color: COLORS.feasible }, name: "best trial",
  }], layout(`Isolation: ${iso.path}, best trial over ${over}`, {
    xaxis, yaxis: { title: { text: bestLabel(p) } }, showlegend: false,
  }), CONFIG);
  return div;
}

// Many trials' curves in a handful of traces (null between trials): a page with 500 trials
// draws as fast as one with 5.
function joined(p, trials, key) {
  const x = [], y = [], text = [], ids = [];
  for (const t of trials) {
    const c = t[key];
    for (let k = 0; k < c.steps.length; k++) {
      x.push(c.steps[k]); y.push(c.values[k]); text.push(p.text[t.trial]); ids.push(t.trial);
    }
    x.push(null); y.push(null); text.push(""); ids.push(null);
  }
  return { x, y, hovertext: text, customdata: ids };
}

function curvesPlot(p) {
  const c = p.curves;
  if (!c.trials.some((t) => t.objective.steps.length || t.train.steps.length)) return null;
  const div = plotDiv("curves", true);
  const groups = [
    ["other trials", (t) => t.rank === null && !["infeasible", "failed", "running"].includes(t.status),
     { color: COLORS.other, width: 1 }],
    ["running", (t) => t.status === "running" && t.rank === null, { color: COLORS.running, width: 1.5 }],
    ["infeasible", (t) => ["infeasible", "failed"].includes(t.status),
     { color: COLORS.infeasible, width: 1, dash: "dash" }],
  ];
  const traces = [];
  for (const [panel, key, axis] of [[1, "train", "x"], [2, "objective", "x2"]]) {
    const yaxis = panel === 1 ? "y" : "y2";
    for (const [name, keep, line] of groups) {
      const members = c.trials.filter(keep);
      if (!members.length) continue;
      traces.push({ type: "scatter", mode: "lines", name, legendgroup: name, showlegend: panel === 2,
                    line, opacity: name === "other trials" ? 0.6 : 0.9, hoverinfo: "text",
                    xaxis: axis, yaxis, ...joined(p, members, key) });
    }
    for (const t of c.trials.filter((t) => t.rank !== null).sort((a, b) => a.rank - b.rank)) {
      traces.push({ type: "scatter", mode: "lines", name: `trial ${t.trial} (top ${t.rank + 1})`,
                    legendgroup: `top${t.rank}`, showlegend: panel === 2,
                    line: { color: TOP_COLORS[t.rank % 3], width: 2.5 }, hoverinfo: "text",
                    xaxis: axis, yaxis, ...joined(p, [t], key) });
    }
  }
  const title = `Training curves of ${c.trials.length} trials, the best ${p.top.length} in colour`;
  Plotly.react(div, traces, layout(title, {
    grid: { rows: 1, columns: 2, pattern: "independent" },
    xaxis: { title: { text: "step" } }, xaxis2: { title: { text: "step" } },
    yaxis: { title: { text: `training: ${c.train || "not logged"}` } },
    yaxis2: { title: { text: `validation: ${c.objective}` } },
  }), CONFIG);
  return div;
}

// Each trial's best step as a fraction of its train.steps, with the playbook's 10% and 25% rules.
function bestStepPlot(p) {
  const b = p.best_step;
  if (!b) return null;
  const div = plotDiv("best-step", false);
  const traces = [];
  for (const [kind, symbol, size, name] of [
    ["feasible", "circle", 8, "feasible trials"], ["top", "star", 14, "top 3 trials"]]) {
    const pts = b.points.filter((q) => q.kind === kind);
    if (!pts.length) continue;
    traces.push({
      type: "scatter", mode: "markers", name,
      x: pts.map((q) => q.x), y: pts.map((q) => q.y), customdata: pts.map((q) => q.trial),
      hovertext: pts.map((q) => `${p.text[q.trial]}<br>best step ${q.step} of ${q.steps} ` +
                                `(${Math.round(100 * q.y)}% of training)`),
      hoverinfo: "text",
      marker: { color: COLORS[kind], symbol, size, line: { width: kind === "top" ? 1 : 0 } },
    });
  }
  const band = (y0, y1, color) => ({ type: "rect", xref: "paper", yref: "y", x0: 0, x1: 1, y0, y1,
                                     fillcolor: color, opacity: 0.12, line: { width: 0 },
                                     layer: "below" });
  const line = (y) => ({ type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: y, y1: y,
                         line: { dash: "dash", color: "#555", width: 1 } });
  const pct = (v) => `${Math.round(100 * v)}%`;
  const label = (y, text, below) => ({ xref: "paper", yref: "y", x: 0.01, y, text,
                                       showarrow: false, xanchor: "left",
                                       yanchor: below ? "top" : "bottom",
                                       font: { size: 11, color: "#444" } });
  const title = `Best step of ${b.points.length} feasible trials: ${b.counts.late} in the last ` +
                `${pct(1 - b.late)}, ${b.counts.early} in the first ${pct(b.early)}`;
  Plotly.react(div, traces, layout(title, {
    xaxis: { title: { text: bestLabel(p) } },
    yaxis: { title: { text: "best step / train.steps" }, range: [-0.05, 1.05], tickformat: ".0%",
             tickvals: [0, b.early, 0.25, 0.5, b.late, 1], zeroline: false },
    shapes: [band(-0.05, b.early, "#ff7f0e"), band(b.late, 1.05, "#9467bd"),
             line(b.early), line(b.late)],
    annotations: [label(b.early, `first ${pct(b.early)}: saturated early`, true),
                  label(b.late, `last ${pct(1 - b.late)}: still improving`, false)],
  }), CONFIG);
  return div;
}

// A number as the report prints it: `digits` significant digits, no trailing zeros.
function num(v, digits = 4) {
  return v === null || v === undefined ? "-" : String(Number(v.toPrecision(digits)));
}

function fade(hex, alpha) {
  const [r, g, b] = [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
  return `rgba(${r},${g},${b},${alpha})`;
}

// One line of a trial against the step; hovering a point names the trial (and `note`), the step
// and the value.
function stepLine(p, trial, steps, values, what, rest, note) {
  const head = note ? `${p.text[trial]}<br>${note}` : p.text[trial];
  return { type: "scatter", mode: "lines", x: steps, y: values, hoverinfo: "text",
           customdata: steps.map(() => trial),
           hovertext: steps.map((s, k) => `${head}<br>step ${s}: ${what} ${num(values[k])}`),
           ...rest };
}

// The best trials' unclipped gradient norms against the step, with the playbook's clipping
// threshold (the 90th percentile of the per-step norms) and the configured clip, and the histogram
// of the best per-step norms aggregated over all steps (items 82, 87).
function gradNormPlot(p) {
  const g = p.grad_norms;
  if (!g) return null;
  const div = plotDiv("grad-norms", true);
  const traces = [];
  let first = Infinity, last = -Infinity;
  g.trials.forEach((t, rank) => {
    const color = TOP_COLORS[rank % TOP_COLORS.length];
    const best = rank === 0;
    const c = t.per_step || t.periods;
    first = Math.min(first, c.steps[0]); last = Math.max(last, c.steps[c.steps.length - 1]);
    if (t.per_step) {
      traces.push(stepLine(p, t.trial, c.steps, c.values, "gradient norm", {
        name: `${t.label}: every step`, opacity: best ? 0.9 : 0.55,
        line: { color, width: best ? 1.2 : 0.8 } }));
      return;
    }
    if (best) {  // the best trial in full: where most of each period's steps lie, its worst step
      traces.push(stepLine(p, t.trial, c.steps, c.p50, "median of the period's steps", {
        name: "median", showlegend: false, legendgroup: "band", line: { color, width: 0 } }));
      traces.push(stepLine(p, t.trial, c.steps, c.p90, "90th percentile of the period's steps", {
        name: `${t.label}: median to 90th percentile of each period's steps`, legendgroup: "band",
        fill: "tonexty", fillcolor: fade(color, 0.25), line: { color, width: 0 } }));
      traces.push(stepLine(p, t.trial, c.steps, c.max, "largest step of the period", {
        name: `${t.label}: largest step of each period`, line: { color, width: 1, dash: "dot" } }));
    }
    traces.push(stepLine(p, t.trial, c.steps, c.mean, "mean of the period", {
      name: `${t.label}: mean of each period`, opacity: best ? 1 : 0.6,
      line: { color, width: best ? 2 : 1 } }));
  });
  const h = g.histogram;
  // The lines every view of the threshold shares: dashed at the 90th percentile, dotted red at
  // the configured clip, on the norm axis of each panel.
  const lines = (t, threshold, panel) => {
    const out = [];
    const at = (v) => (panel === 1 ? { x: [first, last], y: [v, v] }
                                    : { x: [v, v], y: [0, Math.max(...h.counts)],
                                        xaxis: "x2", yaxis: "y2" });
    if (threshold !== null) {
      const name = `${g.percentile}th percentile: the playbook's clipping threshold (${num(threshold, 3)})`;
      out.push({ type: "scatter", mode: "lines", name, legendgroup: "threshold",
                 showlegend: panel === 1, hoverinfo: "name", ...at(threshold),
                 line: { color: "#000", width: 1.2, dash: "dash" } });
    }
    if (t.clip !== null) {
      const clipped = t.clipped === null ? "" : `, ${Math.round(100 * t.clipped)}% of updates clipped`;
      out.push({ type: "scatter", mode: "lines", name: `train.grad_clip_norm = ${num(t.clip, 3)}${clipped}`,
                 legendgroup: "clip", showlegend: panel === 1, hoverinfo: "name", ...at(t.clip),
                 line: { color: COLORS.infeasible, width: 1.4, dash: "dot" } });
    }
    return out;
  };
  traces.push(...lines(g.trials[0], g.trials[0].threshold, 1));
  const kind = g.trials[0].per_step ? "every step" : "per evaluation period";
  const shown = g.trials.length === 1 ? "trial" : `${g.trials.length} trials`;
  const rest = {
    xaxis: { title: { text: "step" }, domain: h ? [0, 0.58] : [0, 1] },
    yaxis: { title: { text: "global gradient L2 norm (unclipped)" }, type: g.log ? "log" : "linear" },
  };
  if (h) {
    const rank = g.trials.findIndex((t) => t.trial === h.trial);
    const color = TOP_COLORS[rank % TOP_COLORS.length];
    const x = h.edges, y = [...h.counts, h.counts[h.counts.length - 1]];
    traces.push({ type: "scatter", mode: "lines", name: "histogram", showlegend: false,
                  xaxis: "x2", yaxis: "y2", x, y, line: { shape: "hv", color, width: 1 },
                  fill: "tozeroy", fillcolor: fade(color, 0.45), hoverinfo: "text",
                  customdata: x.map(() => h.trial),
                  hovertext: h.counts.map((n, k) => `${p.text[h.trial]}<br>${n} steps with a norm ` +
                                                   `from ${num(x[k], 3)} to ${num(x[k + 1], 3)}`) });
    traces.push(...lines(g.trials[rank], h.threshold, 2));
    rest.xaxis2 = { title: { text: `gradient norm of a step: trial ${h.trial}'s ${h.steps} steps` },
                    domain: [0.68, 1], anchor: "y2", type: g.log ? "log" : "linear" };
    rest.yaxis2 = { title: { text: "steps" }, anchor: "x2", rangemode: "tozero" };
  }
  const right = h ? `; right: the histogram of trial ${h.trial}'s steps` : "";
  Plotly.react(div, traces, layout(`Gradient norm of the best ${shown}, ${kind}${right}`, rest),
               CONFIG);
  return div;
}

// Every step's training loss of the early-instability probe's trials by learning-rate multiple,
// the running median the diagnostic reads, where it rose and where diverged trials stopped
// (items 83, 99).
function stepLossPlot(p) {
  const s = p.step_losses;
  if (!s) return null;
  const div = plotDiv("step-losses", true);
  const traces = [], markers = [];  // the markers last: after every trial in the legend
  const marks = { rise: false, stop: false };
  s.trials.forEach((t, k) => {
    const color = MULTIPLE_COLORS[k % MULTIPLE_COLORS.length];
    const group = `trial${t.trial}`;
    traces.push(stepLine(p, t.trial, t.loss.steps, t.loss.values, "loss", {
      name: `${t.label}: every step`, legendgroup: group, showlegend: false, opacity: 0.35,
      line: { color, width: 0.8 } }, t.label));
    traces.push(stepLine(p, t.trial, t.median.steps, t.median.values,
                         `${s.window}-step median loss`, {
      name: t.label, legendgroup: group, line: { color, width: 2.2 } }, t.label));
    for (const [key, symbol, what] of [
      ["rise", "triangle-up", `${s.window}-step median first above ${s.factor}x its lowest`],
      ["stop", "x", "diverged here"]]) {
      const q = t[key];
      if (!q) continue;
      markers.push({ type: "scatter", mode: "markers", name: what, legendgroup: key,
                    showlegend: !marks[key], x: [q.step], y: [q.value], customdata: [t.trial],
                    hoverinfo: "text", hovertext: [`${p.text[t.trial]}<br>${t.label}<br>${what}: ` +
                                                   `step ${q.step}, loss ${num(q.value)}`],
                    marker: { symbol, size: 12, color, line: { width: 1, color: "#000" } } });
      marks[key] = true;
    }
  });
  traces.push(...markers);
  const title = `Every step's training loss at ${s.trials.length} learning rates, ` +
                `${s.window}-step running median thick`;
  Plotly.react(div, traces, layout(title, {
    xaxis: { title: { text: "step" } },
    yaxis: { title: { text: "training loss of the step's batch" }, type: s.log ? "log" : "linear" },
  }), CONFIG);
  return div;
}

function bestOfKPlot(p) {
  const b = p.best_of_k;
  if (!b) return null;
  const div = plotDiv("best-of-k", false);
  const x = b.k.map(String);
  Plotly.react(div, [{
    type: "box", name: "best of k", x, q1: b.q1, median: b.median, q3: b.q3,
    lowerfence: b.min, upperfence: b.max, marker: { color: COLORS.feasible }, hoverinfo: "all",
  }, {
    type: "scatter", mode: "lines", x, y: x.map(() => b.best), name: `best of all ${b.finished}`,
    line: { dash: "dash", color: COLORS.top },
  }], layout(`Is the study sampled densely enough? (bootstrap of ${b.finished} trials)`, {
    xaxis: { title: { text: "number of trials k" }, type: "category" },
    yaxis: { title: { text: `best ${p.objective} of k trials` } },
  }), CONFIG);
  return div;
}

function select(trial, html) {
  const panel = document.getElementById("selected");
  panel.innerHTML = html;  // the server escaped every user string of a hover label
  panel.classList.add("shown");
  document.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
  const row = document.getElementById(`trial-${trial}`);
  if (row) { row.classList.add("selected"); row.scrollIntoView({ block: "center" }); }
}

function draw(p) {
  const divs = [];
  p.axis.forEach((a, i) => divs.push(axisPlot(p, a, i)));
  p.isolation.forEach((a, i) => divs.push(isolationPlot(p, a, i)));
  divs.push(curvesPlot(p), stepLossPlot(p), gradNormPlot(p), bestStepPlot(p), bestOfKPlot(p));
  for (const div of divs) {
    if (!div || div.dataset.clicks) continue;
    div.dataset.clicks = "1";
    div.on("plotly_click", (e) => {
      const pt = e.points[0];
      if (pt && pt.customdata !== null && pt.customdata !== undefined) {
        const text = Array.isArray(pt.data.hovertext) ? pt.data.hovertext[pt.pointIndex] : "";
        select(pt.customdata, text);
      }
    });
  }
  if (!divs.some((d) => d)) {
    document.getElementById("figures").textContent = "No plots yet: no trial has logged an evaluation.";
  }
  running(p);
  const evaluations = document.getElementById("evaluations");
  evaluations.dataset.count = p.evaluations;
  evaluations.textContent = `${p.evaluations} evaluations`;
}

function duration(s) {
  if (s === null || s === undefined) return "-";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function running(p) {
  const box = document.getElementById("running-table");
  box.textContent = "";
  if (!p.running.length) {
    const pending = p.counts.pending;
    box.textContent = pending ? `None running; ${pending} pending.` : "None running.";
    return;
  }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const h of ["trial", "step", "steps/s", "ETA", "last evaluation", "worker", "hyperparameters"]) {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
  }
  const body = table.createTBody();
  for (const r of p.running) {
    const row = body.insertRow();
    const rate = r.steps_per_second === null ? "compiling or first period" : r.steps_per_second.toFixed(1);
    const cells = [r.trial, r.step === null ? "-" : `${r.step} / ${r.steps}`, rate,
                   duration(r.eta_s), r.since_s === null ? "-" : `${duration(r.since_s)} ago`,
                   r.worker || "-", r.params];
    // Numbers, and strings the server escaped (hyperparameters, worker).
    for (const c of cells) row.insertCell().innerHTML = c;
  }
  box.appendChild(table);
}

// The trials table: click a header to sort (numbers as numbers), type to filter rows.
const tableState = { column: null, descending: false, filter: "" };

function cellValue(row, column) {
  const text = row.cells[column] ? row.cells[column].textContent.trim() : "";
  const number = Number(text);
  return text !== "" && text !== "-" && !Number.isNaN(number) ? number : text.toLowerCase();
}

function applyTable() {
  const table = document.querySelector("#trials table.trials");
  if (!table) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  if (tableState.column !== null) {
    const sign = tableState.descending ? -1 : 1;
    rows.sort((a, b) => {
      const x = cellValue(a, tableState.column), y = cellValue(b, tableState.column);
      if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * sign;
      return typeof x === "number" ? -1 : 1;  // numbers before text ("-") either way
    });
    rows.forEach((r) => body.appendChild(r));
  }
  const words = tableState.filter.toLowerCase().split(/\s+/).filter(Boolean);
  for (const r of rows) {
    const text = r.textContent.toLowerCase();
    r.hidden = !words.every((w) => text.includes(w));
  }
  table.querySelectorAll("th").forEach((th, k) => {
    th.classList.add("sortable");
    th.classList.toggle("sorted-asc", k === tableState.column && !tableState.descending);
    th.classList.toggle("sorted-desc", k === tableState.column && tableState.descending);
  });
}

function setUpTable() {
  const table = document.querySelector("#trials table.trials");
  if (!table || table.dataset.ready) return;
  table.dataset.ready = "1";
  const input = document.createElement("input");
  input.type = "search"; input.className = "filter"; input.value = tableState.filter;
  input.placeholder = "filter trials: completed, 0.003, overfit...";
  input.setAttribute("aria-label", "filter trials");
  input.addEventListener("input", () => { tableState.filter = input.value; applyTable(); });
  table.parentNode.insertBefore(input, table);
  table.querySelectorAll("th").forEach((th, k) => th.addEventListener("click", () => {
    tableState.descending = tableState.column === k ? !tableState.descending : false;
    tableState.column = k;
    applyTable();
  }));
  applyTable();
}

async function follow(live) {
  let version = live.dataset.version;
  let delay = POLL_MS;
  const state = document.getElementById("state");
  for (;;) {
    await new Promise((r) => setTimeout(r, delay));
    try {
      const now = await (await fetch(`${live.dataset.api}/version`, { cache: "no-store" })).json();
      if (now.version !== version) {
        const update = await (await fetch(live.dataset.api, { cache: "no-store" })).json();
        version = update.version;
        for (const [part, html] of Object.entries(update.parts)) {
          const box = document.querySelector(`[data-part="${part}"]`);
          if (box) box.innerHTML = html;  // rendered and escaped by the server
        }
        draw(update.payload);
        setUpTable();
        const c = update.payload.counts;
        delay = c.running || c.pending ? POLL_MS : IDLE_POLL_MS;
      }
      live.classList.remove("lost");
      state.textContent = `live, checked ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      live.classList.add("lost");
      state.textContent = `cannot reach the dashboard (${err.message}); retrying`;
    }
  }
}

async function followHome(live) {
  for (;;) {
    await new Promise((r) => setTimeout(r, 5000));
    try {
      const html = await (await fetch(live.dataset.refresh, { cache: "no-store" })).text();
      // Keep a half-made comparison choice: only the study table and tree are replaced.
      const home = document.getElementById("home");
      const chosen = Array.from(home.querySelectorAll("select")).map((s) => s.value);
      home.innerHTML = html;  // rendered and escaped by the server
      home.querySelectorAll("select").forEach((s, k) => { if (chosen[k]) s.value = chosen[k]; });
      live.classList.remove("lost");
    } catch (err) {
      live.classList.add("lost");
    }
  }
}

function compare() {
  const data = JSON.parse(document.getElementById("compare").textContent);
  Plotly.react("best-so-far", data.studies.map((s) => ({
    type: "scatter", mode: "lines+markers", name: s.name, x: s.n, y: s.best,
    hovertemplate: "%{y} after %{x} trials",
  })), {
    xaxis: { title: { text: "finished trials" } },
    yaxis: { title: { text: `best ${data.studies[0].objective} so far` } },
    margin: { t: 20 }, legend: { orientation: "h" },
  }, CONFIG);
}

// When the page was drawn, in ms since navigation began (scripts/bench_dashboard.py reads it).
function ready() {
  document.body.dataset.ready = String(Math.max(1, Math.round(performance.now())));
}

document.addEventListener("DOMContentLoaded", () => {
  const payload = document.getElementById("payload");
  const live = document.getElementById("live");
  if (payload) {
    draw(JSON.parse(payload.textContent));
    setUpTable();
    ready();
    follow(live);
  } else if (document.getElementById("compare")) {
    compare();
    ready();
  } else {
    ready();
    if (live && live.dataset.refresh) followHome(live);
  }
});
