/* Vigil dashboard: what every page shares. All script lives in files (the CSP allows no inline
   script): the JSON API is called with fetch and the session's CSRF token, htmx swaps fragments. */
(function () {
  "use strict";

  function csrf() {
    var m = document.cookie.match(/(?:^|; )vigil_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function signIn() {
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
  }

  /* Call the JSON API; resolves to {ok, status, data}. A lost session goes to the sign-in page. */
  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    return fetch(path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (r) {
      var type = r.headers.get("content-type") || "";
      var parse = type.indexOf("json") >= 0 ? r.json() : Promise.resolve(null);
      return parse.then(function (data) {
        if (r.status === 401 && path.indexOf("/api/v1/auth/") !== 0) signIn();
        return { ok: r.ok, status: r.status, data: data };
      });
    });
  }

  function problem(res) {
    if (res.data && res.data.detail) return res.data.detail;
    return "the request failed (" + res.status + ")";
  }

  function say(text) {
    var el = document.getElementById("status");
    if (el) el.textContent = text;
  }

  function fire(name) {
    document.body.dispatchEvent(new CustomEvent(name, { bubbles: true }));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action='sign-out']");
    if (!button) return;
    api("POST", "/api/v1/auth/logout").then(function () {
      window.location.assign("/login");
    });
  });

  /* htmx fragments are GETs, but send the token anyway should a page ever post through htmx. */
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrf();
  });

  window.Vigil = { api: api, csrf: csrf, problem: problem, say: say, fire: fire };
})();
