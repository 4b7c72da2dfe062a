// The maze explorer (reports/index.html): reads the JSON in <script id="explorer-data"> and draws,
// for the chosen suite, maze and step, one head's attention (and its mass on non-cell tokens), the
// logit lens and the future-path probe on the maze grid. Plain DOM + SVG, no library, no network.
// Data layout: docs/report.md. Colours and marks come from data.style, the pictures' one scheme
// (mazesearch.viz.overlay.scheme): walls, cells with no open edge greyed, the true path green, the
// model's steps as arrows (moves blue, through a wall red, jumps red dashed), a token naming no
// cell a purple "?", origin a white disc, target an orange cross.
(function () {
  "use strict";
  const node = document.getElementById("explorer-data");
  if (!node) return;
  const data = JSON.parse(node.textContent);
  const style = data.style;
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const L = data.n_layers, H = data.n_heads;
  const state = { suite: 0, maze: 0, step: 0, block: 0, head: 0, layer: L };
  const cacheKey = {};

  // the heat ramp (style.heat), linearly interpolated: 0 stays white, so walls and paths read
  const STOPS = style.heat;
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
      const deg = new Array(m.n * m.n).fill(0), edges = data.edges[String(m.n)];
      for (let e = 0; e < m.open.length; e++) {
        if (m.open[e] === "1") { deg[edges[2 * e]]++; deg[edges[2 * e + 1]]++; }
      }
      cacheKey[key] = { attn: decode(m.attn), lens: decode(m.lens), probe: m.probe ? decode(m.probe) : null,
        noncell: m.noncell ? decode(m.noncell) : null, blocked: deg.map((d) => d === 0) };
    }
    return { suite: s, m: m, arr: cacheKey[key] };
  }

  function el(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function cellName(c, n) {
    return c === -2 ? "<PATH_END>" : "(" + Math.floor(c / n) + "," + (c % n) + ")";
  }

  // An arrow from (x1, y1) to (x2, y2) on a white casing (readable on any heat colour).
  function arrow(svg, x1, y1, x2, y2, colour, dashes, w, cls) {
    const g = el("g", { "class": cls }, svg);
    const dx = x2 - x1, dy = y2 - y1, len = Math.hypot(dx, dy) || 1, ux = dx / len, uy = dy / len;
    const head = Math.max(4, 2.6 * w), bx = x2 - ux * head, by = y2 - uy * head;
    el("line", { x1: x1, y1: y1, x2: bx, y2: by, stroke: "#fff", "stroke-width": w + 2.5, "stroke-linecap": "round" }, g);
    el("line", { x1: x1, y1: y1, x2: bx, y2: by, stroke: colour, "stroke-width": w,
      "stroke-dasharray": dashes.map((d) => d * w).join(" ") }, g);
    const px = -uy * head * 0.55, py = ux * head * 0.55;
    el("polygon", { points: [x2, y2, bx + px, by + py, bx - px, by - py].join(","), fill: colour,
      stroke: "#fff", "stroke-width": 0.8 }, g);
    return g;
  }

  // The model's steps 0..upto on the grid, each coloured by its kind (style.steps), beside the
  // cell centres on the right of its direction like the gallery's arrows.
  function drawSteps(svg, m, upto, cs) {
    const n = m.n, cx = (c) => (c % n + 0.5) * cs, cy = (c) => (Math.floor(c / n) + 0.5) * cs;
    const w = Math.max(1.5, cs / 12), lane = 0.15 * cs, shrink = 0.18 * cs;
    let last = -1;
    for (let j = 0; j <= upto && j < m.steps.length; j++) {
      const s = m.steps[j], cls = "walked" + (j === upto ? " current" : "") + (j === m.first_wrong ? " wrong" : "");
      if (s.kind === "noncell") {
        const at = last >= 0 ? last : m.origin;
        const g = el("g", { "class": cls + " noncell", "data-kind": s.kind }, svg);
        el("rect", { x: cx(at) + cs * 0.1, y: cy(at) - cs * 0.42, width: cs * 0.3, height: cs * 0.3, rx: 3,
          fill: style.noncell }, g);
        const t = el("text", { x: cx(at) + cs * 0.25, y: cy(at) - cs * 0.2, "text-anchor": "middle",
          "font-size": Math.max(9, cs * 0.22), "font-weight": "bold", fill: "#fff" }, g);
        t.textContent = "?";
        continue;
      }
      if (s.cell < 0) continue;  // <PATH_END> or nothing: no mark on the grid
      if (last >= 0) {
        const kind = style.steps[s.kind] || style.steps.move;
        let x1 = cx(last), y1 = cy(last), x2 = cx(s.cell), y2 = cy(s.cell);
        if (s.kind === "stay") {  // a small loop above the cell
          x1 -= cs * 0.2; x2 += cs * 0.2; y1 -= cs * 0.3; y2 -= cs * 0.3;
        } else {
          const len = Math.hypot(x2 - x1, y2 - y1), nx = -(y2 - y1) / len, ny = (x2 - x1) / len;
          const ux = (x2 - x1) / len, uy = (y2 - y1) / len;
          x1 += nx * lane + ux * shrink; y1 += ny * lane + uy * shrink;
          x2 += nx * lane - ux * shrink; y2 += ny * lane - uy * shrink;
        }
        arrow(svg, x1, y1, x2, y2, kind[0], kind[1], w * (j === upto ? 1.3 : 1), cls).setAttribute("data-kind", s.kind);
      }
      last = s.cell;
    }
  }

  // One maze drawn at `size` px with per-cell values (0..255, shown as v / vmax); returns the <svg>.
  function drawGrid(svg, m, arr, values, vmax, opts) {
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
        t.textContent = "cell (" + Math.floor(c / n) + "," + (c % n) + "): " + (values[c] / 255).toFixed(3) +
          (arr.blocked[c] ? " (no open edge: outside the maze)" : "");
      }
      if (arr.blocked[c]) {  // uncarved (outside a placed maze) or an obstacle: greyed, as in the gallery
        el("rect", { x: (c % n) * cs, y: Math.floor(c / n) * cs, width: cs, height: cs, fill: style.blocked,
          "fill-opacity": style.blocked_alpha, "class": "blocked", "pointer-events": "none" }, svg);
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
      el("line", Object.assign(line, { stroke: style.wall, "stroke-width": Math.max(1, cs / 12) }), svg);
    }
    el("rect", { x: 0, y: 0, width: opts.size, height: opts.size, fill: "none", stroke: style.wall,
      "stroke-width": Math.max(1.5, cs / 8) }, svg);
    if (!opts.paths) return svg;
    el("polyline", { points: m.true_path.map((c) => cx(c) + "," + cy(c)).join(" "), fill: "none",
      stroke: style.true_path, "stroke-width": Math.max(1.5, cs / 9), "stroke-opacity": 0.75,
      "stroke-linejoin": "round", "class": "true-path" }, svg);
    drawSteps(svg, m, state.step, cs);
    const o = style.origin, t = style.target, r = cs / 5;
    el("circle", { cx: cx(m.origin), cy: cy(m.origin), r: r, fill: o.fill, stroke: o.edge, "stroke-width": 1.5,
      "class": "origin" }, svg);
    const X = (x, y) => {  // a cross (matplotlib's "X" marker): half-size k, arms 2a wide
      const a = r * 0.35, k = r;
      return [[x - k + a, y - k], [x, y - a], [x + k - a, y - k], [x + k, y - k + a], [x + a, y], [x + k, y + k - a],
        [x + k - a, y + k], [x, y + a], [x - k + a, y + k], [x - k, y + k - a], [x - a, y], [x - k, y - k + a]]
        .map((p) => p.join(",")).join(" ");
    };
    el("polygon", { points: X(cx(m.target), cy(m.target)), fill: t.fill, stroke: t.edge, "stroke-width": 1.2,
      "class": "target" }, svg);
    const step = m.steps[state.step];
    const chosen = step ? step.cell : -1;
    const wrong = state.step === m.first_wrong;
    if (chosen >= 0) {
      el("rect", { x: (chosen % n) * cs + 2, y: Math.floor(chosen / n) * cs + 2, width: cs - 4, height: cs - 4,
        fill: "none", stroke: wrong ? style.bad : style.predicted, "stroke-width": 3, "stroke-dasharray": "4 3",
        "class": "chosen" + (wrong ? " wrong" : "") }, svg);
    }
    if (m.first_wrong !== null && m.first_wrong !== undefined && state.step >= m.first_wrong) {
      // the first wrong step stays flagged while the later steps are replayed
      const fw = m.steps[m.first_wrong];
      let at = fw.cell;
      for (let j = m.first_wrong - 1; at < 0 && j >= 0; j--) at = m.steps[j].cell;
      if (at < 0) at = m.origin;
      const g = el("g", { "class": "first-wrong" }, svg);
      el("circle", { cx: (at % n) * cs + cs * 0.82, cy: Math.floor(at / n) * cs + cs * 0.18, r: Math.max(6, cs * 0.16),
        fill: style.bad, stroke: "#fff", "stroke-width": 1 }, g);
      const tx = el("text", { x: (at % n) * cs + cs * 0.82, y: Math.floor(at / n) * cs + cs * 0.18 + Math.max(3.5, cs * 0.06),
        "text-anchor": "middle", "font-size": Math.max(10, cs * 0.2), "font-weight": "bold", fill: "#fff" }, g);
      tx.textContent = "!";
      el("title", {}, g).textContent = "first wrong step: step " + m.first_wrong;
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
  function sum(a) {
    let v = 0;
    for (let i = 0; i < a.length; i++) v += a[i];
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

  const KIND_WORDS = { wall: "through a wall", jump: "a jump to a non-neighbour", stay: "the same cell again",
    noncell: "a token that names no cell", end: "<PATH_END>", none: "nothing (stopped)", move: "an open move",
    start: "its first cell" };

  function verdict(m, n) {
    if (m.first_wrong === null || m.first_wrong === undefined) {
      return m.exact ? "exact." : "wrong, though every emitted choice was right (it stopped short).";
    }
    const s = m.steps[m.first_wrong];
    const right = s.right.length ? s.right.map((c) => cellName(c, n)).join(" or ") : "nothing (off the maze)";
    return "wrong: first wrong step " + m.first_wrong + ", chose " + (s.token || "nothing") + " (" +
      (KIND_WORDS[s.kind] || s.kind) + "), right was " + right + ".";
  }

  // Bars: this head's attention on cells (all together) and on each non-cell token.
  function drawNoncell(m, arr) {
    const svg = $("ex-noncell");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (!arr.noncell) return;
    const K = m.noncell_tokens.length, C = m.n * m.n;
    const cells = sum(slice(arr.attn, state.step * L * H * C + (state.block * H + state.head) * C, C)) / 255;
    const other = slice(arr.noncell, (state.step * L * H + state.block * H + state.head) * K, K);
    const rows = [["all cells", cells, true]].concat(
      Array.from(other, (v, k) => [m.noncell_tokens[k], v / 255, false]).filter((r) => r[1] >= 0.005)
        .sort((a, b) => b[1] - a[1]).slice(0, 8));
    const rowH = 16, width = 280, label = 110, barW = width - label - 40;
    svg.setAttribute("viewBox", "0 0 " + width + " " + (rows.length * rowH + 4));
    svg.setAttribute("width", width);
    svg.setAttribute("height", rows.length * rowH + 4);
    rows.forEach(([name, v, isCells], i) => {
      const y = 2 + i * rowH;
      const g = el("g", { "class": isCells ? "bar cells" : "bar noncell", "data-token": name,
        "data-mass": v.toFixed(3) }, svg);
      el("text", { x: label - 4, y: y + 11, "text-anchor": "end", "font-size": 10 }, g).textContent = name;
      el("rect", { x: label, y: y + 2, width: Math.max(0.5, v * barW), height: rowH - 5,
        fill: isCells ? color(0.75) : style.noncell }, g);
      el("text", { x: label + v * barW + 3, y: y + 11, "font-size": 10 }, g).textContent = v.toFixed(2);
    });
    const rest = sum(other) / 255;
    $("ex-noncell-caption").textContent = "L" + state.block + "H" + state.head + " at this step: " +
      rest.toFixed(2) + " of its attention on tokens that name no cell (" + cells.toFixed(2) +
      " on cells; the map beside shows only the cells)";
  }

  function render() {
    const { suite, m, arr } = maze();
    const n = m.n, C = n * n, S = m.steps.length;
    state.step = Math.min(state.step, S - 1);
    const step = m.steps[state.step];
    $("ex-step").max = S - 1;
    $("ex-step").value = state.step;
    $("ex-step-label").textContent = "step " + state.step + " / " + (S - 1);
    const fw = m.first_wrong;
    $("ex-first-wrong").disabled = fw === null || fw === undefined;
    const here = state.step === fw ? " This is the first wrong step." : "";
    $("ex-info").textContent = suite.name + " (" + suite.dataset + ", " + n + "×" + n + "), maze " + m.maze_id +
      ": " + verdict(m, n) + " " + m.steps.length + " tokens predicted, true path " + (m.true_path.length - 1) +
      " moves. At this step the model chose " + (step.token || "(nothing: stopped)") +
      (step.kind && step.kind !== "move" && step.kind !== "start" ? " (" + (KIND_WORDS[step.kind] || step.kind) + ")" : "") +
      "; right: " + (step.right.length ? step.right.map((c) => cellName(c, n)).join(" or ") : "nothing") + "." + here;
    $("ex-info").className = state.step === fw ? "wrong" : "";

    const at = arr.attn, stepA = L * H * C;
    const attn = slice(at, state.step * stepA + (state.block * H + state.head) * C, C);
    drawGrid($("ex-attn"), m, arr, attn, maxOf(attn), { size: 280, paths: true, titles: true });
    $("ex-attn-caption").textContent = "attention of L" + state.block + "H" + state.head +
      " from this step's query, summed per cell (brightest = " + (maxOf(attn) / 255).toFixed(2) + ")";
    drawNoncell(m, arr);

    const lens = slice(arr.lens, (state.step * (L + 1) + state.layer) * C, C);
    drawGrid($("ex-lens"), m, arr, lens, 255, { size: 280, paths: true, titles: true });
    const top = step.lens_top[state.layer];
    const pr = step.p_right ? step.p_right[state.layer] : null;
    $("ex-lens-caption").textContent = "logit lens at " + data.layer_names[state.layer] +
      ": probability of each cell's token (top token " + top[0] + ", p = " + top[1].toFixed(2) +
      "; on the right choice " + fmt(pr) + ")";

    if (arr.probe) {
      const probe = slice(arr.probe, (state.step * (L + 1) + state.layer) * C, C);
      drawGrid($("ex-probe"), m, arr, probe, 255, { size: 280, paths: true, titles: true });
      const f1 = data.probe.f1.trained[state.layer], f1c = data.probe.f1.random_init[state.layer];
      $("ex-probe-caption").textContent = "future-path probe at " + data.layer_names[state.layer] +
        ": P(cell still to be walked); explorer probe F1 (held out, micro) " + fmt(f1) +
        " (random-init model " + fmt(f1c) + ")";
    }

    const rows = step.lens_top.map((t, l) => "<tr" + (l === state.layer ? " class=\"sel\"" : "") + "><td>" +
      data.layer_names[l] + "</td><td>" + esc(t[0]) + "</td><td class=\"num\">" + t[1].toFixed(2) +
      "</td><td class=\"num p-right\">" + fmt(step.p_right ? step.p_right[l] : null) + "</td></tr>");
    $("ex-lens-top").innerHTML = "<caption>logit lens per layer: top token, and the probability on the right " +
      "choice (" + esc(step.right.length ? step.right.map((c) => cellName(c, n)).join(" or ") : "none") +
      ")</caption><tr><th>layer</th><th>top token</th><th class=\"num\">p</th><th class=\"num\">p(right)</th></tr>" +
      rows.join("");

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
        drawGrid(svg, m, arr, a, maxOf(a), { size: 64, paths: false, titles: false });
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
    fillSelect($("ex-maze"), s.mazes.map((m, i) => "#" + i + " " + (m.exact ? "exact" : "WRONG" +
      (m.first_wrong === null || m.first_wrong === undefined ? "" : " at step " + m.first_wrong)) + " (" +
      (m.true_path.length - 1) + " moves)"), state.maze);
  }

  // the legend, drawn from the same scheme
  function legend() {
    const box = $("ex-legend");
    if (!box) return;
    const items = [["line", style.true_path, [], "shortest path"], ["arrow", style.steps.move[0], [], "model's move"],
      ["arrow", style.steps.wall[0], [], "through a wall"], ["arrow", style.steps.jump[0], style.steps.jump[1], "jump"],
      ["q", style.noncell, [], "token naming no cell"], ["disc", style.origin.fill, [], "origin"],
      ["cross", style.target.fill, [], "target"], ["cell", style.blocked, [], "no open edge (outside the maze)"],
      ["bang", style.bad, [], "first wrong step"]];
    box.innerHTML = "";
    for (const [shape, colour, dashes, text] of items) {
      const span = document.createElement("span");
      const svg = document.createElementNS(SVGNS, "svg");
      svg.setAttribute("width", 22); svg.setAttribute("height", 14);
      if (shape === "line") el("line", { x1: 1, y1: 7, x2: 21, y2: 7, stroke: colour, "stroke-width": 3 }, svg);
      if (shape === "arrow") arrow(svg, 1, 7, 21, 7, colour, dashes, 2, "legend");
      if (shape === "q") { el("rect", { x: 5, y: 1, width: 12, height: 12, rx: 2, fill: colour }, svg);
        el("text", { x: 11, y: 11, "text-anchor": "middle", "font-size": 10, fill: "#fff" }, svg).textContent = "?"; }
      if (shape === "disc") el("circle", { cx: 11, cy: 7, r: 5, fill: colour, stroke: style.origin.edge }, svg);
      if (shape === "cross") el("path", { d: "M6 2 L16 12 M16 2 L6 12", stroke: colour, "stroke-width": 4 }, svg);
      if (shape === "cell") el("rect", { x: 4, y: 0, width: 14, height: 14, fill: colour }, svg);
      if (shape === "bang") { el("circle", { cx: 11, cy: 7, r: 6, fill: colour }, svg);
        el("text", { x: 11, y: 11, "text-anchor": "middle", "font-size": 10, fill: "#fff" }, svg).textContent = "!"; }
      span.appendChild(svg);
      span.appendChild(document.createTextNode(" " + text));
      box.appendChild(span);
    }
  }

  legend();
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
  $("ex-first-wrong").addEventListener("click", () => {
    const fw = maze().m.first_wrong;
    if (fw !== null && fw !== undefined) { state.step = fw; render(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
    if (e.key === "ArrowRight") { state.step += 1; render(); }
    if (e.key === "ArrowLeft") { state.step = Math.max(0, state.step - 1); render(); }
  });
  render();
})();
