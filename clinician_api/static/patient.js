/* The patient page: charts (uPlot) with thresholds and alerts drawn, the timer and time entries,
   and the thresholds form. Reads and writes go through the JSON API; fragments reload by event. */
(function () {
  "use strict";
  var V = window.Vigil;
  var pid = document.body.dataset.patientId;
  var base = "/api/v1/patients/" + encodeURIComponent(pid);
  var DAY = 864e5;
  var state = { days: 7, resolution: "auto", zoom: null };
  var bands = {};
  var alerts = [];
  var plots = {};
  var SEV = { critical: "#a51d2d", high: "#b54708", medium: "#9a7d00", low: "#1a5fb4" };
  var SPAN = { raw: 31, hourly: 366, daily: 3660 };

  function range() {
    if (state.zoom) return state.zoom;
    var end = Date.now();
    return [end - state.days * DAY, end];
  }

  function resolutionFor(span) {
    var wanted = state.resolution;
    if (wanted === "auto") wanted = span <= 3 * DAY ? "raw" : span <= 62 * DAY ? "hourly" : "daily";
    if (span > SPAN[wanted] * DAY) wanted = span > SPAN.hourly * DAY ? "daily" : "hourly";
    return wanted;
  }

  function loadContext() {
    var settings = V.api("GET", base + "/settings").then(function (res) {
      bands = res.ok ? res.data.bands : {};
    });
    var history = document.getElementById("history")
      ? V.api("GET", base + "/alerts?limit=200").then(function (res) {
          alerts = res.ok ? res.data.items : [];
        })
      : Promise.resolve();
    return Promise.all([settings, history]);
  }

  function drawMarks(u, metric) {
    var ctx = u.ctx, box = u.bbox;
    ctx.save();
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.font = 11 * devicePixelRatio + "px sans-serif";
    (bands[metric] || []).forEach(function (b) {
      var y = u.valToPos(b.value, "y", true);
      if (y < box.top || y > box.top + box.height) return;
      ctx.strokeStyle = SEV[b.severity] || "#555";
      ctx.fillStyle = ctx.strokeStyle;
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.left + box.width, y);
      ctx.stroke();
      ctx.fillText(b.op + " " + b.value + " " + b.severity, box.left + 4, y - 3);
    });
    ctx.setLineDash([]);
    ctx.strokeStyle = "#a51d2d";
    alerts.forEach(function (a) {
      if (a.metric && a.metric !== metric) return;
      var x = u.valToPos(Date.parse(a.opened_at) / 1000, "x", true);
      if (x < box.left || x > box.left + box.width) return;
      ctx.beginPath();
      ctx.moveTo(x, box.top);
      ctx.lineTo(x, box.top + box.height);
      ctx.stroke();
    });
    ctx.restore();
  }

  function draw(figure, metric, chart) {
    var plotEl = figure.querySelector(".plot");
    var raw = chart.resolution === "raw";
    var xs = [], avg = [], lo = [], hi = [];
    chart.points.forEach(function (p) {
      xs.push(Date.parse(p.t) / 1000);
      avg.push(p.avg);
      lo.push(p.min);
      hi.push(p.max);
    });
    var series = [{}, { label: raw ? "reading" : "mean", stroke: "#1a5fb4", width: 2, points: { show: raw || xs.length < 60 } }];
    var data = [xs, avg];
    if (!raw) {
      series.push({ label: "min", stroke: "#7a8ca3", dash: [4, 4] }, { label: "max", stroke: "#7a8ca3", dash: [4, 4] });
      data.push(lo, hi);
    }
    if (plots[metric]) plots[metric].destroy();
    var r = range();
    plots[metric] = new uPlot(
      {
        width: Math.max(plotEl.clientWidth, 280),
        height: 240,
        series: series,
        scales: { x: { time: true, range: function () { return [r[0] / 1000, r[1] / 1000]; } } },
        cursor: { drag: { x: true, y: false, setScale: false } },
        hooks: {
          draw: [function (u) { drawMarks(u, metric); }],
          setSelect: [function (u) {
            if (u.select.width < 5) return;
            var a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
            state.zoom = [a * 1000, b * 1000];
            reloadAll();
          }],
        },
      },
      data,
      plotEl
    );
    figure.dataset.points = String(xs.length);
    figure.dataset.resolution = chart.resolution;
    figure.querySelector(".chart-state").textContent =
      xs.length + " " + (raw ? "readings" : chart.resolution + " points") + (chart.truncated ? " (more exist: zoom in)" : "");
  }

  function load(figure) {
    var metric = figure.dataset.metric;
    var r = range();
    var res = resolutionFor(r[1] - r[0]);
    var q = "?resolution=" + res + "&start=" + new Date(r[0]).toISOString() + "&end=" + new Date(r[1]).toISOString();
    figure.querySelector(".chart-state").textContent = "loading…";
    return V.api("GET", base + "/vitals/" + metric + q).then(function (out) {
      if (!out.ok) { figure.querySelector(".chart-state").textContent = V.problem(out); return; }
      draw(figure, metric, out.data);
    });
  }

  function reloadAll() {
    document.querySelectorAll("figure.chart").forEach(load);
  }

  document.querySelectorAll("[data-range]").forEach(function (button) {
    button.addEventListener("click", function () {
      state.days = Number(button.dataset.range);
      state.zoom = null;
      document.querySelectorAll("[data-range]").forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      reloadAll();
    });
  });
  document.getElementById("resolution").addEventListener("change", function (event) {
    state.resolution = event.target.value;
    reloadAll();
  });
  window.addEventListener("resize", function () {
    Object.keys(plots).forEach(function (m) {
      var el = document.querySelector("figure.chart[data-metric='" + m + "'] .plot");
      if (el) plots[m].setSize({ width: Math.max(el.clientWidth, 280), height: 240 });
    });
  });

  /* -- time ------------------------------------------------------------------------------ */
  function timeChanged(text) {
    V.say(text);
    V.fire("vigil:time-changed");
  }

  function act(res, done) {
    if (res.ok) done(res.data);
    else V.say(V.problem(res));
  }

  document.addEventListener("click", function (event) {
    var el = event.target.closest("[data-action]");
    if (!el) return;
    var action = el.dataset.action;
    if (action === "reset-zoom") { state.zoom = null; reloadAll(); }
    if (action === "timer-start") {
      var kind = document.getElementById("timer-kind").value;
      V.api("POST", base + "/timer/start", { kind: kind }).then(function (res) {
        act(res, function () { timeChanged("Timer started."); });
      });
    }
    if (action === "timer-stop") {
      V.api("POST", base + "/timer/stop").then(function (res) {
        act(res, function (entry) { timeChanged("Timer stopped: " + entry.minutes + " minutes recorded."); });
      });
    }
    if (action === "time-delete") {
      V.api("DELETE", "/api/v1/time-entries/" + encodeURIComponent(el.dataset.entry)).then(function (res) {
        act(res, function () { timeChanged("Entry deleted."); });
      });
    }
    if (action === "band-add") {
      var fieldset = el.closest("fieldset.bands");
      var row = document.getElementById("band-row").content.firstElementChild.cloneNode(true);
      fieldset.querySelector("tbody").appendChild(row);
      fieldset.querySelector("input[name='own']").checked = true;
      row.querySelector("input[name='value']").focus();
    }
    if (action === "band-remove") {
      var set = el.closest("fieldset.bands");
      el.closest("tr").remove();
      set.querySelector("input[name='own']").checked = true;
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id === "manual-time") {
      event.preventDefault();
      var started = new Date(form.started_at.value);
      var body = { kind: form.kind.value, started_at: started.toISOString(), minutes: Number(form.minutes.value), reason: form.reason.value };
      V.api("POST", base + "/time-entries", body).then(function (res) {
        act(res, function () { timeChanged("Time entry added."); });
      });
    }
    if (form.id === "settings-form") {
      event.preventDefault();
      var doc = JSON.parse(form.dataset.settings || "{}");
      doc.spo2_scale = Number(form.spo2_scale.value);
      var expected = Array.prototype.map.call(form.querySelectorAll("input[name='expected']:checked"), function (c) { return c.value; });
      if (expected.length) doc.expected_metrics = expected; else delete doc.expected_metrics;
      var thresholds = {};
      form.querySelectorAll("fieldset.bands").forEach(function (fs) {
        if (!fs.querySelector("input[name='own']").checked) return;
        thresholds[fs.dataset.metric] = Array.prototype.map.call(fs.querySelectorAll("tr.band"), function (row) {
          return {
            op: row.querySelector("[name='op']").value,
            value: Number(row.querySelector("[name='value']").value),
            severity: row.querySelector("[name='severity']").value,
            confirm: Number(row.querySelector("[name='confirm']").value || 1),
          };
        });
      });
      if (Object.keys(thresholds).length) doc.thresholds = thresholds; else delete doc.thresholds;
      V.api("PUT", base + "/settings", { version: Number(form.dataset.version), settings: doc }).then(function (res) {
        if (!res.ok) { document.getElementById("settings-error").textContent = V.problem(res); return; }
        V.say("Thresholds saved (version " + res.data.version + "); the alert engine uses them from the next reading.");
        bands = res.data.bands;
        V.fire("vigil:settings-changed");
        reloadAll();
      });
    }
  });

  function tick() {
    document.querySelectorAll(".elapsed[data-since]").forEach(function (el) {
      var s = Math.max(0, Math.floor((Date.now() - Date.parse(el.dataset.since)) / 1000));
      el.textContent = "(" + Math.floor(s / 60) + " min " + (s % 60) + " s)";
    });
  }
  setInterval(tick, 1000);

  loadContext().then(reloadAll);
})();
