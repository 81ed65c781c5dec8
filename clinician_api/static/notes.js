/* Consult notes: start one, save the draft, sign it, draft an amendment. The JSON API does the
   work (with the CSRF token); the page reloads to show the note as it now stands. */
(function () {
  "use strict";
  var V = window.Vigil;
  var note = document.body.dataset.note;
  var patient = document.body.dataset.patientId;

  function sections() {
    var out = {};
    ["subjective", "objective", "assessment", "plan"].forEach(function (name) {
      out[name] = document.getElementById("note-" + name).value;
    });
    return out;
  }

  function then(message) {
    return function (res) {
      if (!res.ok) { V.say(V.problem(res)); return res; }
      V.say(message);
      window.location.reload();
      return res;
    };
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (!button) return;
    var action = button.dataset.action;
    if (action === "note-start") {
      V.api("POST", "/api/v1/patients/" + encodeURIComponent(patient) + "/notes", {}).then(function (res) {
        if (!res.ok) { V.say(V.problem(res)); return; }
        window.location.assign("/notes/" + res.data.note_id);
      });
    } else if (action === "note-save") {
      V.api("PUT", "/api/v1/notes/" + note + "/draft", sections()).then(then("Draft saved."));
    } else if (action === "note-sign") {
      V.api("PUT", "/api/v1/notes/" + note + "/draft", sections()).then(function (res) {
        if (!res.ok) { V.say(V.problem(res)); return; }
        V.api("POST", "/api/v1/notes/" + note + "/sign").then(then("Signed: the note is read-only now."));
      });
    }
  });

  var amend = document.getElementById("amend-form");
  if (amend) {
    amend.addEventListener("submit", function (event) {
      event.preventDefault();
      var reason = document.getElementById("amend-reason").value;
      V.api("POST", "/api/v1/notes/" + note + "/amend", { reason: reason }).then(then("Amendment drafted."));
    });
  }
})();
