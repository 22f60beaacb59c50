// Progressive enhancements; every page works without them.
// Copy buttons: <button data-copy="element-id" hidden> copies that element's text.
// Row lists: <fieldset data-rows> with [data-add-row] and [data-remove-row] buttons.
"use strict";
document.querySelectorAll("[data-copy]").forEach(function (button) {
  if (!navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    navigator.clipboard.writeText(source.innerText.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });
});
document.querySelectorAll("[data-rows]").forEach(function (set) {
  function wire(row) {
    var remove = row.querySelector("[data-remove-row]");
    if (!remove) return;
    remove.hidden = false;
    remove.addEventListener("click", function () {
      if (set.querySelectorAll(".row").length > 1) row.remove();
      else row.querySelector("input").value = "";
    });
  }
  set.querySelectorAll(".row").forEach(wire);
  var add = set.querySelector("[data-add-row]");
  if (!add) return;
  add.hidden = false;
  add.addEventListener("click", function () {
    var rows = set.querySelectorAll(".row");
    var copy = rows[rows.length - 1].cloneNode(true);
    var input = copy.querySelector("input");
    input.value = "";
    input.setAttribute("aria-label", input.getAttribute("aria-label").replace(/\d+$/, String(rows.length + 1)));
    add.before(copy);
    wire(copy);
    input.focus();
  });
});
// Passkeys: <form data-passkey="register|signin|second" data-start="URL"> with hidden csrf,
// ceremony and credential fields. On submit the page asks the server to start a
// ceremony, lets the browser's authenticator answer, and posts the form with the answer
// and the id of the ceremony it answered. A sign-in form with data-conditional also offers
// passkeys in the username field's autofill; pressing the button cancels that request
// first. Without WebAuthn in the browser the forms stay hidden and [data-passkey-missing]
// notes stay shown.
(function () {
  var pkc = window.PublicKeyCredential;
  if (!pkc || !pkc.parseCreationOptionsFromJSON || !pkc.parseRequestOptionsFromJSON) return;
  document.querySelectorAll("[data-passkey-missing]").forEach(function (note) { note.hidden = true; });
  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    var mode = form.getAttribute("data-passkey");
    var status = form.querySelector("[data-passkey-status]");
    var waiting = null;
    form.hidden = false;
    function say(text) { if (status) status.textContent = text; }
    function begin(conditional) {
      var abort = conditional ? new AbortController() : null;
      if (abort) waiting = abort;
      var body = new URLSearchParams();
      body.set("csrf", form.elements.csrf.value);
      if (form.elements.kind) body.set("kind", form.elements.kind.value);
      if (form.elements.current) body.set("current", form.elements.current.value);
      var ceremony = null;
      return fetch(form.getAttribute("data-start"), { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) {
          return r.json().then(function (j) {
            if (!r.ok) throw new Error(j.error || "the server refused");
            return j;
          });
        })
        .then(function (j) {
          if (abort && abort.signal.aborted) return null;
          ceremony = j.ceremony;
          if (mode === "register") {
            return navigator.credentials.create({ publicKey: pkc.parseCreationOptionsFromJSON(j.options.publicKey) });
          }
          var request = { publicKey: pkc.parseRequestOptionsFromJSON(j.options.publicKey) };
          if (abort) {
            request.mediation = "conditional";
            request.signal = abort.signal;
          }
          return navigator.credentials.get(request);
        })
        .then(function (credential) {
          if (!credential || (abort && abort.signal.aborted)) return;
          form.elements.ceremony.value = ceremony;
          form.elements.credential.value = JSON.stringify(credential);
          form.submit();
        });
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (waiting) { waiting.abort(); waiting = null; }
      say("");
      begin(false).catch(function (e) {
        say(e && e.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : "Passkeys did not work here: " + (e && e.message || e));
      });
    });
    if (mode === "signin" && form.hasAttribute("data-conditional") && pkc.isConditionalMediationAvailable) {
      pkc.isConditionalMediationAvailable().then(function (ok) {
        if (ok) begin(true).catch(function () {});
      });
    }
  });
})();
