// Submits the response_mode=form_post form to the application. Served as a file so that
// the page's Content-Security-Policy needs no inline script.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("autopost");
  if (form) { form.submit(); }
});
