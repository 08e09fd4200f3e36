// Keeps the call log current without a reload: fetches the server-rendered list every second and swaps it in,
// keeping open calls open; opening a call loads its event timeline. All HTML comes escaped from the server.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var lastList = null;

  function filterQuery() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { if (value) { params.set(key, value); } });
    return params;
  }

  function loadTimeline(details) {
    var url = "/calls/" + encodeURIComponent(details.dataset.conversation) + "/timeline";
    fetch(url, { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) { details.querySelector(".timeline").innerHTML = html; });
  }

  function refresh() {
    var params = filterQuery();
    params.set("partial", "list");
    fetch("/calls?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null || html === lastList) { return; }
        lastList = html;
        var current = document.getElementById("calls");
        var opened = {};
        current.querySelectorAll("details[open]").forEach(function (details) {
          opened[details.dataset.conversation] = {
            updated: details.dataset.updated,
            timeline: details.querySelector(".timeline").innerHTML
          };
        });
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("#calls");
        fresh.querySelectorAll("details.call").forEach(function (details) {
          var was = opened[details.dataset.conversation];
          if (!was) { return; }
          details.querySelector(".timeline").innerHTML = was.timeline;
          details.open = true;
          if (was.updated !== details.dataset.updated) { loadTimeline(details); }
        });
        current.replaceWith(fresh);
      })
      .catch(function () { /* the server is restarting: try again on the next tick */ });
  }

  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (details.matches && details.matches("details.call") && details.open) { loadTimeline(details); }
  }, true);

  function applyFilters(event) {
    if (event) { event.preventDefault(); }
    var query = filterQuery().toString();
    history.replaceState(null, "", "/calls" + (query ? "?" + query : ""));
    lastList = null;
    refresh();
  }
  form.addEventListener("submit", applyFilters);
  form.addEventListener("change", applyFilters);

  setInterval(refresh, 1000);
})();
