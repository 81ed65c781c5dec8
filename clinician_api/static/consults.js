/* Video consults in the dashboard: start now, book a slot, cancel, links, guests, availability.
   Every action is a call to the JSON API (window.Vigil.api, with the CSRF header). */
(function () {
  "use strict";
  var V = window.Vigil;
  var consult = document.body.getAttribute("data-consult");
  var base = "/api/v1/consults/" + consult;
  var el = function (id) { return document.getElementById(id); };

  function fail(res) { V.say("Not done: " + V.problem(res)); }

  function showLinks(me, patient) {
    el("links").hidden = false;
    el("my-join").href = me.join_path;
    if (patient) el("patient-link").value = patient.join_url;
  }

  function slotText(s) {
    var a = new Date(s.starts_at), b = new Date(s.ends_at);
    return a.toLocaleString() + " – " + b.toLocaleTimeString();
  }

  document.addEventListener("click", function (event) {
    var b = event.target.closest("button[data-action]");
    if (!b) return;
    var action = b.getAttribute("data-action");
    if (action === "consult-start") {
      V.api("POST", base + "/start").then(function (res) {
        if (!res.ok) return fail(res);
        b.hidden = true;
        showLinks(res.data.me, res.data.patient);
        V.say("The call is open. Join it, and send the patient their link.");
      });
    } else if (action === "my-link") {
      V.api("POST", base + "/my-link").then(function (res) {
        if (!res.ok) return fail(res);
        window.location.assign(res.data.join_path);
      });
    } else if (action === "consult-cancel") {
      V.api("POST", base + "/cancel").then(function (res) {
        if (!res.ok) return fail(res);
        window.location.reload();
      });
    } else if (action === "load-slots") {
      V.api("GET", "/api/v1/consult-slots").then(function (res) {
        if (!res.ok) return fail(res);
        var list = el("slots");
        list.textContent = "";
        if (!res.data.length) { list.textContent = "No open slots in the next two weeks."; return; }
        res.data.forEach(function (s) {
          var li = document.createElement("li");
          li.appendChild(document.createTextNode(slotText(s) + " "));
          var book = document.createElement("button");
          book.type = "button";
          book.textContent = "Book";
          book.setAttribute("data-action", "book");
          book.setAttribute("data-slot", String(s.slot_id));
          li.appendChild(book);
          list.appendChild(li);
        });
      });
    } else if (action === "book") {
      V.api("POST", base + "/book", { slot_id: Number(b.getAttribute("data-slot")) }).then(function (res) {
        if (!res.ok) return fail(res);
        window.location.reload();
      });
    } else if (action === "reissue") {
      V.api("POST", base + "/links", { participant_id: b.getAttribute("data-participant") }).then(function (res) {
        if (!res.ok) return fail(res);
        el("reissued").hidden = false;
        el("reissued-link").value = res.data.join_url;
      });
    } else if (action === "remove") {
      V.api("DELETE", base + "/participants/" + encodeURIComponent(b.getAttribute("data-participant"))).then(function (res) {
        if (!res.ok) return fail(res);
        window.location.reload();
      });
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id === "guest-form") {
      event.preventDefault();
      V.api("POST", base + "/guests", { role: el("guest-role").value, label: el("guest-label").value }).then(function (res) {
        if (!res.ok) return fail(res);
        el("reissued").hidden = false;
        el("reissued-link").value = res.data.join_url;
        V.say("Invited. Send them the link below.");
      });
    } else if (form.id === "slot-form") {
      event.preventDefault();
      var start = new Date(el("slot-start").value);
      var end = new Date(start.getTime() + Number(el("slot-minutes").value) * 60000);
      V.api("POST", "/api/v1/consult-slots", { starts_at: start.toISOString(), ends_at: end.toISOString() }).then(function (res) {
        if (!res.ok) return fail(res);
        V.say("Slot offered: " + slotText(res.data));
      });
    }
  });
})();
