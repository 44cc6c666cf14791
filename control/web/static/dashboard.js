// AutoSpeak SRE dashboard: draws the page's data as SVG and refreshes it every few seconds.
// Written for this console; no library. Text from the data is set with textContent only.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const STAGES = ["turn_end", "stt_final", "first_token", "first_tts_audio", "first_frame_sent"];
  const LABELS = {turn_end: "end of turn", stt_final: "STT final", first_token: "first token",
                  first_tts_audio: "first TTS audio", first_frame_sent: "first frame sent"};
  const REFRESH_MS = 5000;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function html(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 100;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function timeLabel(ms, spanH) {
    const d = new Date(ms);
    const hh = String(d.getUTCHours()).padStart(2, "0"), mm = String(d.getUTCMinutes()).padStart(2, "0");
    return spanH > 24 ? `${d.getUTCMonth() + 1}/${d.getUTCDate()} ${hh}h` : `${hh}:${mm}`;
  }

  function rollingMedian(values, k) {
    return values.map((_, i) => {
      const w = values.slice(Math.max(0, i - k + 1), i + 1).slice().sort((a, b) => a - b);
      return w[Math.floor((w.length - 1) / 2)];
    });
  }

  // The chosen series per turn: voice-to-voice, or one stage's milliseconds after the end of speech.
  function series(data, metric) {
    return data.points
      .map(p => ({...p, ms: metric === "v2v" ? p.v2v_ms : (p.stages[metric] ?? null)}))
      .filter(p => p.ms !== null);
  }

  function drawV2V(box, data, metric) {
    const W = 1100, H = 260, L = 52, R = 12, T = 10, B = 28;
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${metric} per turn`});
    const t0 = Date.parse(data.since), t1 = Date.parse(data.now);
    const pts = series(data, metric);
    const ymax = niceMax(Math.max(0, ...pts.map(p => p.ms)) * 1.1);
    const x = t => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
    const y = v => H - B - (H - T - B) * v / ymax;
    for (let i = 0; i <= 4; i++) {
      const v = ymax * i / 4;
      svg.appendChild(el("line", {class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v)}));
      svg.appendChild(el("text", {x: L - 6, y: y(v) + 4, "text-anchor": "end"}, `${Math.round(v)} ms`));
    }
    for (let i = 0; i <= 6; i++) {
      const t = t0 + (t1 - t0) * i / 6;
      const anchor = i === 0 ? "start" : i === 6 ? "end" : "middle";
      svg.appendChild(el("text", {x: x(t), y: H - 8, "text-anchor": anchor}, timeLabel(t, data.window_hours)));
    }
    svg.appendChild(el("line", {class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}));
    const sorted = pts.map(p => p.ms).sort((a, b) => a - b);
    const p90 = sorted.length ? sorted[Math.max(1, Math.ceil(0.9 * sorted.length)) - 1] : Infinity;
    for (const p of pts) {
      const link = el("a", {href: `/console/calls/${encodeURIComponent(p.call_id)}#turn-${p.turn}`, class: "turn-link"});
      const dot = el("circle", {cx: x(Date.parse(p.at)), cy: y(p.ms), r: 4,
                                class: p.ms >= p90 && pts.length > 1 ? "dot slow" : "dot"});
      dot.appendChild(el("title", {}, `${Math.round(p.ms)} ms · turn ${p.turn} · ${p.at.slice(11, 19)} UTC`));
      link.appendChild(dot);
      svg.appendChild(link);
    }
    if (pts.length > 2) {
      const med = rollingMedian(pts.map(p => p.ms), 7);
      const d = pts.map((p, i) => `${i ? "L" : "M"}${x(Date.parse(p.at)).toFixed(1)},${y(med[i]).toFixed(1)}`).join("");
      svg.appendChild(el("path", {class: "median", d}));
    }
    if (!pts.length) svg.appendChild(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no timed turns in this window"));
    box.replaceChildren(svg);
  }

  function drawStages(box, data) {
    const rows = STAGES.filter(s => data.stages[s]);
    const W = 520, rowH = 26, L = 110, R = 16, T = 6, B = 22, H = T + B + rowH * Math.max(1, rows.length);
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "per-stage latency"});
    const xmax = niceMax(Math.max(0, ...rows.map(s => data.stages[s].p99)) * 1.05);
    const x = v => L + (W - L - R) * v / xmax;
    for (let i = 0; i <= 4; i++) {
      const v = xmax * i / 4;
      svg.appendChild(el("line", {class: "grid", x1: x(v), x2: x(v), y1: T, y2: H - B}));
      svg.appendChild(el("text", {x: x(v), y: H - 6, "text-anchor": "middle"}, `${Math.round(v)}`));
    }
    rows.forEach((s, i) => {
      const p = data.stages[s], cy = T + rowH * i + rowH / 2;
      svg.appendChild(el("text", {x: L - 8, y: cy + 4, "text-anchor": "end"}, LABELS[s]));
      const bar = el("rect", {class: `st-${s}`, x: L, y: cy - 7, width: Math.max(1, x(p.p50) - L), height: 14});
      bar.appendChild(el("title", {}, `${LABELS[s]}: p50 ${Math.round(p.p50)} ms, p90 ${Math.round(p.p90)} ms, p99 ${Math.round(p.p99)} ms (n=${p.n})`));
      svg.appendChild(bar);
      svg.appendChild(el("line", {class: "whisker", x1: x(p.p50), x2: x(p.p90), y1: cy, y2: cy}));
      svg.appendChild(el("line", {class: "whisker", x1: x(p.p99), x2: x(p.p99), y1: cy - 6, y2: cy + 6}));
    });
    box.replaceChildren(svg);
  }

  function drawLive(box, data) {
    const W = 520, rowH = 24, L = 190, R = 30, H = 12 + rowH * Math.max(1, data.live.length);
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "live calls per worker"});
    const xmax = Math.max(1, ...data.live.map(w => w.calls));
    data.live.forEach((w, i) => {
      const cy = 6 + rowH * i + rowH / 2;
      svg.appendChild(el("text", {x: L - 8, y: cy + 4, "text-anchor": "end"}, `${w.region} · ${w.worker}`));
      svg.appendChild(el("rect", {class: "bar", x: L, y: cy - 7, width: (W - L - R) * w.calls / xmax, height: 14}));
      svg.appendChild(el("text", {x: L + (W - L - R) * w.calls / xmax + 4, y: cy + 4}, String(w.calls)));
    });
    if (!data.live.length) svg.appendChild(el("text", {x: W / 2, y: H / 2 + 4, "text-anchor": "middle"}, "no live calls"));
    box.replaceChildren(svg);
  }

  function fillTable(id, rows, empty) {
    const body = document.querySelector(`#${id} tbody`);
    if (!body) return;
    if (!rows.length) {
      const cols = document.querySelectorAll(`#${id} thead th`).length;
      const tr = html("tr");
      tr.append(html("td", {colspan: cols, class: "muted"}, empty));
      rows = [tr];
    }
    body.replaceChildren(...rows);
  }

  function setText(id, value) {
    const node = document.getElementById(id);
    if (node) node.textContent = value;
  }

  let latest = null;

  function render(data) {
    latest = data;
    drawV2V(document.getElementById("v2v-chart"), data, document.getElementById("metric").value);
    drawStages(document.getElementById("stage-chart"), data);
    drawLive(document.getElementById("live-chart"), data);
    const fmt = v => (v === null || v === undefined ? "—" : String(v));
    setText("live-total", String(data.live.reduce((n, w) => n + w.calls, 0)));
    setText("v2v-p50", data.voice_to_voice ? String(Math.round(data.voice_to_voice.p50)) : "—");
    setText("v2v-p90", data.voice_to_voice ? String(Math.round(data.voice_to_voice.p90)) : "—");
    setText("turns", String(data.rates.turns));
    setText("err-rate", fmt(data.rates.provider_failures_per_100_turns));
    setText("failed-pct", fmt(data.rates.failed_calls_pct));
    setText("updated", `updated ${data.now.slice(11, 19)} UTC`);
    fillTable("live-table", data.live.map(w => {
      const tr = html("tr");
      tr.append(html("td", {}, w.region), html("td", {class: "mono"}, w.worker), html("td", {class: "num"}, String(w.calls)));
      return tr;
    }), "No live calls.");
    fillTable("worker-load", data.workers.map(w => {
      const tr = html("tr");
      const seen = new Date(w.seen * 1000).toISOString().slice(11, 19);
      tr.append(html("td", {class: "mono"}, w.worker), html("td", {class: "num"}, String(w.active)),
                html("td", {class: "num"}, String(w.capacity)), html("td", {class: "num"}, w.load_pct === null ? "—" : `${w.load_pct.toFixed(1)} %`),
                html("td", {class: "time"}, seen));
      return tr;
    }), "No slot answers yet (no call since this cell started, or API only).");
    fillTable("slow-turns", data.slow_turns.map(p => {
      const tr = html("tr"), a = html("a", {class: "mono", href: `/console/calls/${encodeURIComponent(p.call_id)}#turn-${p.turn}`}, p.call_id.slice(0, 8));
      const td = html("td");
      td.append(a);
      tr.append(html("td", {class: "time"}, p.at.slice(0, 19).replace("T", " ")), td, html("td", {}, String(p.turn)),
                html("td", {class: "num"}, `${Math.round(p.v2v_ms)} ms`));
      return tr;
    }), "No timed turns in this window.");
  }

  async function refresh() {
    const hours = document.getElementById("hours").value;
    try {
      const resp = await fetch(`/dashboard/data.json?hours=${encodeURIComponent(hours)}`, {credentials: "same-origin"});
      if (resp.redirected || resp.status === 401) { window.location.assign("/signin?reason=ended"); return; }
      if (resp.ok) render(await resp.json());
    } catch (e) { /* the next tick tries again */ }
  }

  document.getElementById("metric").addEventListener("change", () => { if (latest) render(latest); });
  const initial = JSON.parse(document.getElementById("dashboard-data").textContent);
  render(initial);
  setInterval(refresh, REFRESH_MS);
})();
