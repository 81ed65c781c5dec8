/* The alert queue: live over the server-sent events stream. A new, acknowledged or escalated alert
   refreshes the rows (one fragment request), so nobody reloads and nobody polls. */
(function () {
  "use strict";
  var V = window.Vigil;
  var live = document.getElementById("live");
  var states = (document.body.dataset.states || "open").split(",");
  var query = states.map(function (s) { return "state=" + encodeURIComponent(s); }).join("&");
  var pending = false;

  function refresh() {
    if (pending) return;
    pending = true;
    window.htmx.ajax("GET", "/ui/alerts/rows?" + query, { target: "#queue-rows", swap: "innerHTML" }).then(function () {
      pending = false;
      document.getElementById("queue-rows").dataset.refreshed = String(Date.now());
    });
  }

  function connect() {
    var source = new EventSource("/api/v1/alerts/stream");
    source.addEventListener("ready", function () {
      live.dataset.state = "live";
      live.textContent = "Live: new and acknowledged alerts appear without reloading.";
    });
    source.addEventListener("alert", refresh);
    source.addEventListener("resync", refresh);
    source.addEventListener("overflow", refresh);
    source.onerror = function () {
      live.dataset.state = "down";
      live.textContent = "Live updates interrupted; reconnecting…";
    };
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action='acknowledge']");
    if (!button) return;
    button.disabled = true;
    V.api("POST", "/api/v1/alerts/" + encodeURIComponent(button.dataset.alert) + "/acknowledge", {}).then(function (res) {
      if (!res.ok) { V.say(V.problem(res)); button.disabled = false; return; }
      V.say("Alert acknowledged: its escalation stopped.");
      refresh();
    });
  });

  connect();
})();
