/* Sign-in: password, then the authenticator code (or enrolling one, with its QR code). */
(function () {
  "use strict";
  var V = window.Vigil;
  var passwordForm = document.getElementById("password-form");
  var totpForm = document.getElementById("totp-form");
  var error = document.getElementById("login-error");

  function next() {
    /* Without a next page, "/" sends a patient to their portal and staff to the panel. */
    var target = new URLSearchParams(window.location.search).get("next") || "/";
    return target.charAt(0) === "/" && target.charAt(1) !== "/" ? target : "/";
  }

  function askCode(enrol) {
    passwordForm.hidden = true;
    totpForm.hidden = false;
    if (enrol) {
      V.api("POST", "/api/v1/auth/totp/enrol").then(function (res) {
        if (!res.ok) { error.textContent = V.problem(res); return; }
        document.getElementById("enrol").hidden = false;
        document.getElementById("qr").src = "/api/v1/auth/totp/qr.svg?ts=" + Date.now();
        document.getElementById("totp-secret").textContent = res.data.secret;
      });
    }
    document.getElementById("code").focus();
  }

  passwordForm.addEventListener("submit", function (event) {
    event.preventDefault();
    error.textContent = "";
    var body = { email: passwordForm.email.value, password: passwordForm.password.value };
    V.api("POST", "/api/v1/auth/login", body).then(function (res) {
      if (!res.ok) { error.textContent = V.problem(res); return; }
      var state = res.data.user.second_factor;
      if (state === "required") askCode(false);
      else if (state === "enrol") askCode(true);
      else window.location.assign(next());
    });
  });

  totpForm.addEventListener("submit", function (event) {
    event.preventDefault();
    error.textContent = "";
    V.api("POST", "/api/v1/auth/totp/verify", { code: totpForm.code.value.trim() }).then(function (res) {
      if (!res.ok) { error.textContent = V.problem(res); return; }
      window.location.assign(next());
    });
  });

  /* A session that still needs its second factor lands here: go straight to the code. */
  var step = document.body.dataset.step;
  if (step === "required") askCode(false);
  else if (step === "enrol") askCode(true);
})();
