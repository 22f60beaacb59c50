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
