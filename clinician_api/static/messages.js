/* Secure messaging: the thread list and one thread, live over the server-sent events stream.
   Events carry ids only; a page fetches its fragment again through the audited routes, and an
   open thread marks what it shows as read. Writes call the JSON API with the CSRF token. */
(function () {
  "use strict";
  var V = window.Vigil;
  var live = document.getElementById("live");
  var thread = document.body.dataset.thread || "";
  var pending = false;
  var again = false;

  function lastSeq() {
    var items = document.querySelectorAll("#thread-messages li[data-seq]");
    return items.length ? Number(items[items.length - 1].dataset.seq) : 0;
  }

  function markRead() {
    if (!thread || !document.getElementById("compose")) return Promise.resolve();
    return V.api("POST", "/api/v1/threads/" + thread + "/read", { through_seq: lastSeq() });
  }

  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    var url = thread ? "/ui/threads/" + thread + "/messages" : "/ui/threads/rows";
    var target = thread ? "#thread-messages" : "#thread-rows";
    window.htmx.ajax("GET", url, { target: target, swap: "innerHTML" }).then(function () {
      return thread ? markRead() : null;
    }).then(function () {
      document.querySelector(target).dataset.refreshed = String(Date.now());
      pending = false;
      if (again) { again = false; refresh(); }
    });
  }

  function connect() {
    var source = new EventSource("/api/v1/threads/stream");
    source.addEventListener("ready", function () {
      live.dataset.state = "live";
      live.textContent = "Live: new messages appear without reloading.";
    });
    source.addEventListener("message", function (event) {
      var data = JSON.parse(event.data);
      if (!thread || data.thread_id === thread) refresh();
    });
    source.addEventListener("participant", function () { if (!thread) refresh(); });
    source.addEventListener("resync", refresh);
    source.addEventListener("overflow", refresh);
    source.onerror = function () {
      live.dataset.state = "down";
      live.textContent = "Live updates interrupted; reconnecting…";
    };
  }

  function upload(file) {
    return fetch("/api/v1/threads/" + thread + "/attachments", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": file.type || "application/octet-stream", "X-CSRF-Token": V.csrf(), Accept: "application/json" },
      body: file,
    }).then(function (r) {
      return r.json().then(function (data) { return { ok: r.ok, status: r.status, data: data }; });
    });
  }

  var compose = document.getElementById("compose");
  if (compose) {
    compose.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = document.getElementById("compose-body");
      var fileInput = document.getElementById("compose-file");
      var file = fileInput.files && fileInput.files[0];
      var button = compose.querySelector("button[type=submit]");
      button.disabled = true;
      var first = file ? upload(file) : Promise.resolve(null);
      first.then(function (res) {
        if (res && !res.ok) { throw res; }
        var body = { body: text.value || null };
        if (res) body.attachment_id = res.data.attachment_id;
        return V.api("POST", "/api/v1/threads/" + thread + "/messages", body);
      }).then(function (res) {
        if (!res.ok) throw res;
        text.value = "";
        fileInput.value = "";
        V.say("Message sent.");
        refresh();
      }).catch(function (res) {
        V.say(res && res.status ? V.problem(res) : "the message could not be sent");
      }).then(function () { button.disabled = false; });
    });
  }

  var start = document.getElementById("new-thread");
  if (start) {
    start.addEventListener("submit", function (event) {
      event.preventDefault();
      var pid = document.getElementById("new-patient").value;
      var body = {
        kind: "patient",
        subject: document.getElementById("new-subject").value,
        body: document.getElementById("new-body").value || null,
      };
      V.api("POST", "/api/v1/patients/" + encodeURIComponent(pid) + "/threads", body).then(function (res) {
        if (!res.ok) { V.say(V.problem(res)); return; }
        window.location.assign("/messages/" + res.data.thread_id);
      });
    });
  }

  document.addEventListener("click", function (event) {
    var del = event.target.closest("[data-action='delete-message']");
    if (del) {
      V.api("DELETE", "/api/v1/threads/" + thread + "/messages/" + del.dataset.message).then(function (res) {
        V.say(res.ok ? "Message deleted (its history is kept)." : V.problem(res));
        refresh();
      });
      return;
    }
    var edit = event.target.closest("[data-action='edit-message']");
    if (edit) {
      var item = edit.closest("li.message");
      if (item.querySelector("form.edit")) return;
      var form = document.createElement("form");
      form.className = "edit";
      var label = document.createElement("label");
      label.textContent = "Edit message";
      var area = document.createElement("textarea");
      area.name = "body";
      area.maxLength = 10000;
      var current = item.querySelector(".body");
      area.value = current ? current.textContent : "";
      label.appendChild(area);
      var save = document.createElement("button");
      save.type = "submit";
      save.textContent = "Save";
      form.appendChild(label);
      form.appendChild(save);
      item.appendChild(form);
      area.focus();
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        V.api("PATCH", "/api/v1/threads/" + thread + "/messages/" + edit.dataset.message, { body: area.value }).then(function (res) {
          V.say(res.ok ? "Message edited (the earlier version is kept)." : V.problem(res));
          refresh();
        });
      });
    }
  });

  connect();
  if (thread) markRead();
})();
