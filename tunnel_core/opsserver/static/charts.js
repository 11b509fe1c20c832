/* A small time-series line chart on <canvas>: fixed-length history, auto-scaled y axis, grid,
   labels and a live legend. No dependencies. */
"use strict";

(function () {
  const COLORS = ["#0f8f6f", "#3b6fd8", "#d9822b"];

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (v <= m * p) return m * p;
    }
    return 10 * p;
  }

  function fmt(v, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const abs = Math.abs(v);
    const s = abs >= 100 ? v.toFixed(0) : abs >= 10 ? v.toFixed(1) : abs >= 1 ? v.toFixed(2) : v.toFixed(3);
    return unit ? s + " " + unit : s;
  }

  class LineChart {
    /* series: [{label}], opts: {unit, windowSeconds}; the x axis is wall-clock time, newest at the right */
    constructor(canvas, legend, series, opts) {
      this.canvas = canvas;
      this.legend = legend;
      this.series = series;
      this.unit = (opts && opts.unit) || "";
      this.window = ((opts && opts.windowSeconds) || 180) * 1000;
      this.times = [];
      this.values = series.map(() => []);
      this.legendValues = [];
      if (legend) {
        legend.textContent = "";
        series.forEach((s, i) => {
          const span = document.createElement("span");
          span.className = "s" + i;
          span.textContent = s.label;
          const b = document.createElement("b");
          b.textContent = "–";
          span.appendChild(b);
          legend.appendChild(span);
          this.legendValues.push(b);
        });
      }
    }

    push(t, vals) {
      this.times.push(t);
      vals.forEach((v, i) => this.values[i].push(v));
      while (this.times.length > 2 && this.times[0] < t - this.window) {
        this.times.shift();
        this.values.forEach((arr) => arr.shift());
      }
      vals.forEach((v, i) => {
        if (this.legendValues[i]) this.legendValues[i].textContent = fmt(v, this.unit);
      });
      // For tests and the curious: how many samples the chart holds, and how many are non-zero.
      this.canvas.dataset.samples = String(this.times.length);
      this.canvas.dataset.nonzero = String(this.values[0].filter((v) => v > 0).length);
      this.draw();
    }

    draw() {
      const c = this.canvas;
      const dpr = window.devicePixelRatio || 1;
      const w = c.clientWidth || 400;
      const h = c.clientHeight || 190;
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const g = c.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);

      const pad = { l: 48, r: 10, t: 8, b: 22 };
      const pw = w - pad.l - pad.r;
      const ph = h - pad.t - pad.b;
      let max = 0;
      this.values.forEach((arr) => arr.forEach((v) => { if (v !== null && v > max) max = v; }));
      const top = niceCeil(max * 1.1);

      g.font = "11px system-ui, sans-serif";
      g.textBaseline = "middle";
      g.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {
        const y = pad.t + ph - (ph * i) / 4;
        g.strokeStyle = i === 0 ? "#b8c4cf" : "#e6ebf0";
        g.beginPath();
        g.moveTo(pad.l, Math.round(y) + 0.5);
        g.lineTo(pad.l + pw, Math.round(y) + 0.5);
        g.stroke();
        g.fillStyle = "#6b7a88";
        g.textAlign = "right";
        g.fillText(fmt((top * i) / 4, ""), pad.l - 6, y);
      }

      const len = this.times.length;
      const now = len ? this.times[len - 1] : Date.now();
      const xAt = (t) => pad.l + pw - ((now - t) / this.window) * pw;
      g.textBaseline = "top";
      g.fillStyle = "#6b7a88";
      const minutes = Math.round(this.window / 60000);
      for (let m = 0; m <= minutes; m++) {
        const x = xAt(now - m * 60000);
        g.textAlign = m === 0 ? "right" : m === minutes ? "left" : "center";
        g.fillText(m === 0 ? "now" : "-" + m + " min", x, pad.t + ph + 5);
        if (m > 0 && m < minutes) {
          g.strokeStyle = "#eef2f5";
          g.beginPath();
          g.moveTo(Math.round(x) + 0.5, pad.t);
          g.lineTo(Math.round(x) + 0.5, pad.t + ph);
          g.stroke();
        }
      }
      if (len < 2) {
        g.textAlign = "center";
        g.textBaseline = "middle";
        g.fillStyle = "#8a98a5";
        g.fillText("collecting…", pad.l + pw / 2, pad.t + ph / 2);
      }

      this.values.forEach((arr, si) => {
        g.strokeStyle = COLORS[si % COLORS.length];
        g.lineWidth = 2;
        g.lineJoin = "round";
        g.fillStyle = COLORS[si % COLORS.length];
        g.beginPath();
        let started = false;
        const ok = (v) => v !== null && v !== undefined && !Number.isNaN(v);
        arr.forEach((v, i) => {
          if (!ok(v)) { started = false; return; }
          const x = xAt(this.times[i]);
          const y = pad.t + ph - (Math.min(v, top) / top) * ph;
          if (!started) { g.moveTo(x, y); started = true; } else { g.lineTo(x, y); }
          if (!ok(arr[i - 1]) && !ok(arr[i + 1])) {
            g.fillRect(x - 2, y - 2, 4, 4); // a lone sample would otherwise be invisible
          }
        });
        g.stroke();
      });
    }
  }

  window.TCCharts = { LineChart: LineChart, format: fmt };
})();
