// The console's only script: live countdowns in the queues, and the time slider of a
// complaint's page. The pages work without it.
"use strict";

(function () {
  // Countdowns: the server rendered each from its own clock (`data-now` on the table); they
  // move on from there by the time this page has been open.
  var overdue = document.body.getAttribute("data-overdue") || "overdue";
  function text(seconds) {
    var late = seconds < 0, minutes = Math.floor(Math.abs(seconds) / 60);
    var days = Math.floor(minutes / 1440), hours = Math.floor((minutes % 1440) / 60);
    var mins = minutes % 60, shown;
    if (days) shown = days + "d " + hours + "h";
    else if (hours) shown = hours + "h " + (mins < 10 ? "0" : "") + mins + "m";
    else shown = mins + "m";
    return late ? overdue + " " + shown : shown;
  }
  document.querySelectorAll("table[data-now]").forEach(function (table) {
    var serverNow = Date.parse(table.getAttribute("data-now")), opened = Date.now();
    var cells = table.querySelectorAll(".countdown[data-due]");
    function tick() {
      var now = serverNow + (Date.now() - opened);
      cells.forEach(function (cell) {
        var left = (Date.parse(cell.getAttribute("data-due")) - now) / 1000;
        cell.textContent = text(left);
        cell.classList.toggle("late", left < 0);
      });
    }
    tick();
    setInterval(tick, 1000);
  });

  // The time slider: its positions are "now" and each event; letting go shows the complaint
  // as it stood then (the form's select holds the same choices without a script).
  var form = document.getElementById("as-of");
  if (form) {
    var select = form.querySelector("select"), slider = form.querySelector("input[type=range]");
    if (select && slider) {
      var last = select.options.length - 1;
      slider.hidden = false;
      slider.value = select.selectedIndex === 0 ? last : select.selectedIndex - 1;
      slider.addEventListener("change", function () {
        var i = Number(slider.value);
        select.selectedIndex = i >= last ? 0 : i + 1;
        form.submit();
      });
    }
  }
})();
