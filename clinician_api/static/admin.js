/* Admin pages: the escalation policy editor and the fleet (enrolment tokens, revocation). */
(function () {
  "use strict";
  var V = window.Vigil;

  var policy = document.getElementById("policy-form");
  if (policy) {
    policy.addEventListener("submit", function (event) {
      event.preventDefault();
      var error = document.getElementById("policy-error");
      error.textContent = "";
      var doc;
      try { doc = JSON.parse(document.getElementById("policy-json").value); }
      catch (e) { error.textContent = "That is not valid JSON."; return; }
      var version = policy.dataset.version === "" ? null : Number(policy.dataset.version);
      V.api("PUT", "/api/v1/admin/escalation-policy", { version: version, policy: doc }).then(function (res) {
        if (!res.ok) { error.textContent = V.problem(res); return; }
        window.location.reload();
      });
    });
  }

  var token = document.getElementById("token-form");
  if (token) {
    token.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = { patient_id: token.patient_id.value.trim(), ttl_minutes: Number(token.ttl_minutes.value) };
      V.api("POST", "/api/v1/admin/enrolment-tokens", body).then(function (res) {
        var out = document.getElementById("token-out");
        if (!res.ok) { out.hidden = false; out.querySelector("code").textContent = V.problem(res); return; }
        out.hidden = false;
        out.querySelector("code").textContent = res.data.command;
        document.getElementById("token-expires").textContent = res.data.expires_at;
      });
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action='revoke-agent']");
    if (!button) return;
    if (!window.confirm("Revoke agent " + button.dataset.agent + "? It loses broker access at once.")) return;
    V.api("POST", "/api/v1/admin/agents/" + encodeURIComponent(button.dataset.agent) + "/revoke", {}).then(function (res) {
      if (!res.ok) { V.say(V.problem(res)); return; }
      window.location.reload();
    });
  });
})();
