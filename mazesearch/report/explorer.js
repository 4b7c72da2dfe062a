// The maze explorer (reports/index.html): reads the JSON in <script id="explorer-data"> and draws,
// for the chosen suite, maze and step, one head's attention, the logit lens and the future-path
// probe on the maze grid. Plain DOM + SVG, no library, no network. Data layout: docs/report.md.
(function () {
  "use strict";
  const node = document.getElementById("explorer-data");
  if (!node) return;
  const data = JSON.parse(node.textContent);
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const L = data.n_layers, H = data.n_heads;
  const state = { suite: 0, maze: 0, step: 0, block: 0, head: 0, layer: L };
  const cacheKey = {};

  // white -> dark blue ("Blues") at 5 stops, linearly interpolated: 0 stays white, so walls
  // (dark lines) and paths (green, orange) stay readable on every cell
  const STOPS = [[255, 255, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
  function color(v) {
    const x = Math.min(Math.max(v, 0), 1) * (STOPS.length - 1);
    const i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
    const c = STOPS[i].map((a, k) => Math.round(a + f * (STOPS[i + 1][k] - a)));
    return "rgb(" + c.join(",") + ")";
  }

  function decode(b64) {  // base64 -> Uint8Array (values are round(255 v))
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function maze() {
    const s = data.suites[state.suite], m = s.mazes[state.maze];
    const key = state.suite + "/" + state.maze;
    if (!cacheKey[key]) {
      cacheKey[key] = { attn: decode(m.attn), lens: decode(m.lens), probe: m.probe ? decode(m.probe) : null };
    }
    return { suite: s, m: m, arr: cacheKey[key] };
  }

  function el(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  // One maze drawn at `size` px with per-cell values (0..1, already scaled); returns the <svg>.
  function drawGrid(svg, m, values, vmax, opts) {
    const n = m.n, cs = opts.size / n;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", "-2 -2 " + (opts.size + 4) + " " + (opts.size + 4));
    svg.setAttribute("width", opts.size + 4);
    svg.setAttribute("height", opts.size + 4);
    const cx = (c) => (c % n + 0.5) * cs, cy = (c) => (Math.floor(c / n) + 0.5) * cs;
    for (let c = 0; c < n * n; c++) {
      const v = values ? values[c] / Math.max(vmax, 1e-9) : 0;
      const r = el("rect", { x: (c % n) * cs, y: Math.floor(c / n) * cs, width: cs, height: cs,
        fill: values ? color(v) : "#fff", "data-cell": c }, svg);
      if (values && opts.titles) {
        const t = el("title", {}, r);
        t.textContent = "cell (" + Math.floor(c / n) + "," + (c % n) + "): " + (values[c] / 255).toFixed(3);
      }
    }
    const edges = data.edges[String(n)];
    for (let e = 0; e < m.open.length; e++) {
      if (m.open[e] === "1") continue;
      const a = edges[2 * e], b = edges[2 * e + 1];
      const ra = Math.floor(a / n), ca = a % n;
      const line = b === a + 1
        ? { x1: (ca + 1) * cs, y1: ra * cs, x2: (ca + 1) * cs, y2: (ra + 1) * cs }
        : { x1: ca * cs, y1: (ra + 1) * cs, x2: (ca + 1) * cs, y2: (ra + 1) * cs };
      el("line", Object.assign(line, { stroke: "#222", "stroke-width": Math.max(1, cs / 12) }), svg);
    }
    el("rect", { x: 0, y: 0, width: opts.size, height: opts.size, fill: "none", stroke: "#222",
      "stroke-width": Math.max(1.5, cs / 8) }, svg);
    if (!opts.paths) return svg;
    const poly = (cells, attrs) => {
      if (cells.length < 1) return;
      el("polyline", Object.assign({ points: cells.map((c) => cx(c) + "," + cy(c)).join(" "), fill: "none" }, attrs), svg);
    };
    poly(m.true_path, { stroke: "#2ca02c", "stroke-width": cs / 6, "stroke-dasharray": cs / 5, opacity: 0.9 });
    const walked = [m.origin].concat(m.steps.slice(0, state.step).map((s) => s.cell).filter((c) => c >= 0));
    poly(walked, { stroke: "#ff7f0e", "stroke-width": cs / 7, "class": "walked" });
    el("circle", { cx: cx(m.origin), cy: cy(m.origin), r: cs / 4, fill: "#2ca02c", stroke: "#fff" }, svg);
    el("rect", { x: cx(m.target) - cs / 4, y: cy(m.target) - cs / 4, width: cs / 2, height: cs / 2,
      fill: "#d62728", stroke: "#fff" }, svg);
    const chosen = m.steps[state.step] ? m.steps[state.step].cell : -1;
    if (chosen >= 0) {
      el("rect", { x: (chosen % n) * cs + 2, y: Math.floor(chosen / n) * cs + 2, width: cs - 4, height: cs - 4,
        fill: "none", stroke: "#ff7f0e", "stroke-width": 3, "stroke-dasharray": "4 3", "class": "chosen" }, svg);
    }
    return svg;
  }

  function slice(arr, offset, len) {
    return arr.subarray(offset, offset + len);
  }
  function maxOf(a) {
    let v = 0;
    for (let i = 0; i < a.length; i++) v = Math.max(v, a[i]);
    return v;
  }

  function fillSelect(sel, labels, value) {
    sel.innerHTML = "";
    labels.forEach((label, i) => {
      const o = document.createElement("option");
      o.value = i;
      o.textContent = label;
      sel.appendChild(o);
    });
    sel.value = value;
  }

  function render() {
    const { suite, m, arr } = maze();
    const n = m.n, C = n * n, S = m.steps.length;
    state.step = Math.min(state.step, S - 1);
    const step = m.steps[state.step];
    $("ex-step").max = S - 1;
    $("ex-step").value = state.step;
    $("ex-step-label").textContent = "step " + state.step + " / " + (S - 1);
    const verdict = m.exact ? "exact" : "wrong";
    $("ex-info").textContent = suite.name + " (" + suite.dataset + ", " + n + "×" + n + "), maze " + m.maze_id +
      ": " + verdict + "; " + m.steps.length + " tokens predicted, true path " + (m.true_path.length - 1) +
      " moves. At this step the model chose " + (step.token || "(nothing: stopped)") + ".";

    const at = arr.attn, stepA = L * H * C;
    const attn = slice(at, state.step * stepA + (state.block * H + state.head) * C, C);
    drawGrid($("ex-attn"), m, attn, maxOf(attn), { size: 280, paths: true, titles: true });
    $("ex-attn-caption").textContent = "attention of L" + state.block + "H" + state.head +
      " from this step's query, summed per cell (brightest = " + (maxOf(attn) / 255).toFixed(2) + ")";

    const lens = slice(arr.lens, (state.step * (L + 1) + state.layer) * C, C);
    drawGrid($("ex-lens"), m, lens, 255, { size: 280, paths: true, titles: true });
    const top = step.lens_top[state.layer];
    $("ex-lens-caption").textContent = "logit lens at " + data.layer_names[state.layer] +
      ": probability of each cell's token (top token " + top[0] + ", p = " + top[1].toFixed(2) + ")";

    if (arr.probe) {
      const probe = slice(arr.probe, (state.step * (L + 1) + state.layer) * C, C);
      drawGrid($("ex-probe"), m, probe, 255, { size: 280, paths: true, titles: true });
      const f1 = data.probe.f1.trained[state.layer], f1c = data.probe.f1.random_init[state.layer];
      $("ex-probe-caption").textContent = "future-path probe at " + data.layer_names[state.layer] +
        ": P(cell still to be walked); held-out F1 " + fmt(f1) + " (random-init model " + fmt(f1c) + ")";
    }

    const rows = step.lens_top.map((t, l) => "<tr" + (l === state.layer ? " class=\"sel\"" : "") + "><td>" +
      data.layer_names[l] + "</td><td>" + esc(t[0]) + "</td><td class=\"num\">" + t[1].toFixed(2) + "</td></tr>");
    $("ex-lens-top").innerHTML = "<caption>logit lens top token per layer</caption><tr><th>layer</th><th>top token</th>" +
      "<th>p</th></tr>" + rows.join("");

    const heads = $("ex-heads");
    heads.innerHTML = "";
    for (let b = 0; b < L; b++) {
      for (let h = 0; h < H; h++) {
        const a = slice(at, state.step * stepA + (b * H + h) * C, C);
        const wrap = document.createElement("button");
        wrap.className = "head" + (b === state.block && h === state.head ? " sel" : "");
        wrap.type = "button";
        wrap.title = "L" + b + "H" + h;
        wrap.dataset.block = b;
        wrap.dataset.head = h;
        const svg = document.createElementNS(SVGNS, "svg");
        drawGrid(svg, m, a, maxOf(a), { size: 64, paths: false, titles: false });
        wrap.appendChild(svg);
        const lab = document.createElement("span");
        lab.textContent = "L" + b + "H" + h;
        wrap.appendChild(lab);
        wrap.addEventListener("click", () => { state.block = b; state.head = h; syncSelects(); render(); });
        heads.appendChild(wrap);
      }
    }
    $("explorer").dataset.state = [suite.name, m.maze_id, state.step, state.block, state.head, state.layer].join("/");
  }

  function fmt(x) {
    return x === null || x === undefined || Number.isNaN(x) ? "–" : x.toFixed(2);
  }
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function syncSelects() {
    $("ex-block").value = state.block;
    $("ex-head").value = state.head;
    $("ex-layer").value = state.layer;
  }

  function fillMazes() {
    const s = data.suites[state.suite];
    fillSelect($("ex-maze"), s.mazes.map((m, i) => "#" + i + " " + (m.exact ? "exact" : "WRONG") + " (" +
      (m.true_path.length - 1) + " moves)"), state.maze);
  }

  fillSelect($("ex-suite"), data.suites.map((s) => s.name + " (" + s.dataset + ")"), 0);
  fillSelect($("ex-block"), Array.from({ length: L }, (_, b) => "block " + b), 0);
  fillSelect($("ex-head"), Array.from({ length: H }, (_, h) => "head " + h), 0);
  fillSelect($("ex-layer"), data.layer_names, L);
  fillMazes();
  $("ex-suite").addEventListener("change", (e) => { state.suite = +e.target.value; state.maze = 0; state.step = 0; fillMazes(); render(); });
  $("ex-maze").addEventListener("change", (e) => { state.maze = +e.target.value; state.step = 0; render(); });
  $("ex-block").addEventListener("change", (e) => { state.block = +e.target.value; render(); });
  $("ex-head").addEventListener("change", (e) => { state.head = +e.target.value; render(); });
  $("ex-layer").addEventListener("change", (e) => { state.layer = +e.target.value; render(); });
  $("ex-step").addEventListener("input", (e) => { state.step = +e.target.value; render(); });
  $("ex-prev").addEventListener("click", () => { state.step = Math.max(0, state.step - 1); render(); });
  $("ex-next").addEventListener("click", () => { state.step = state.step + 1; render(); });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
    if (e.key === "ArrowRight") { state.step += 1; render(); }
    if (e.key === "ArrowLeft") { state.step = Math.max(0, state.step - 1); render(); }
  });
  render();
})();
