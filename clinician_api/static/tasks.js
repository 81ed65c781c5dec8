/* The care team's task list: closing a task calls the JSON API, then the row leaves. */
(function () {
  "use strict";
  var V = window.Vigil;
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action='task-done']");
    if (!button) return;
    button.disabled = true;
    V.api("POST", "/api/v1/tasks/" + encodeURIComponent(button.dataset.task) + "/close", { status: "done" }).then(function (res) {
      if (!res.ok) { V.say(V.problem(res)); button.disabled = false; return; }
      var row = button.closest("tr");
      row.parentNode.removeChild(row);
      V.say("Task done.");
    });
  });
})();
