// Keeps the call log current without a reload: fetches the server-rendered list about every second and swaps it
// in, keeping open calls open; opening a call loads its event timeline. One refresh at a time: the next is asked
// for REFRESH_MS after the last one landed, or SLOWDOWN times as long as that one took if the server is slow (a
// filter over a very large log), so an open page never keeps the server busy. All HTML comes escaped from the server.
// Times arrive as <time datetime="...UTC..."> and are shown here in the browser's own zone, with "3 min ago".
// A 401 (the token changed: a restart with a new CALL_LOG_TOKEN) stops the refresh and says what to do.
// The summary strip costs the server a pass over every matching call, so it is asked for (?summary=1) only
// when a new call arrives, the filter changes, or SUMMARY_MS have passed.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var banner = document.getElementById("session-expired");
  var lastList = null;
  var expired = false;
  var clockTimer = null;
  var MINUTE = 60 * 1000;
  var SUMMARY_MS = 15 * 1000;
  var REFRESH_MS = 1000;
  var SLOWDOWN = 4;
  var LONGEST_WAIT_MS = 60 * 1000;
  var refreshTimer = null;
  var inFlight = false;
  var wanted = false;  // a refresh was asked for while one was in flight: it goes as soon as that one lands
  var filterVersion = 0;  // a list fetched for an earlier filter is not shown
  var summaryAt = Date.now();
  var summaryDue = false;
  var newest = newestCall(document);

  function filterQuery() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { if (value) { params.set(key, value); } });
    return params;
  }

  function startOfDay(date) {
    return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
  }

  // "just now", "3 min ago", "2 h ago", "yesterday", "4 days ago"; "" past a week (the date says enough).
  function relativeText(date, now) {
    var minutes = Math.floor((now - date) / MINUTE);
    if (minutes < 1) { return "just now"; }
    if (minutes < 60) { return minutes + " min ago"; }
    var days = Math.round((startOfDay(now) - startOfDay(date)) / (24 * 60 * MINUTE));
    if (days < 1) { return Math.floor(minutes / 60) + " h ago"; }
    if (days === 1) { return "yesterday"; }
    return days < 7 ? days + " days ago" : "";
  }

  function localizeTimes(root) {
    var now = new Date();
    root.querySelectorAll("time[datetime]").forEach(function (element) {
      var date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime())) { return; }
      element.title = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
      if (element.dataset.style === "clock") {
        element.textContent = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
        return;
      }
      var local = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
      var relative = relativeText(date, now);
      element.textContent = relative ? local + " · " + relative : local;
    });
  }

  function expire() {
    expired = true;
    clearInterval(clockTimer);
    clearTimeout(refreshTimer);
    banner.hidden = false;
    document.body.classList.add("expired");
  }

  // The response's text, or null for one to skip (a 503 while the database is away: try again next tick).
  function textOf(response) {
    if (response.status === 401) { expire(); }
    return response.ok ? response.text() : null;
  }

  function loadTimeline(details) {
    var url = "/calls/" + encodeURIComponent(details.dataset.conversation) + "/timeline";
    fetch(url, { credentials: "same-origin" })
      .then(textOf)
      .then(function (html) {
        if (html === null) { return; }
        var timeline = details.querySelector(".timeline");
        var players = Array.prototype.slice.call(timeline.querySelectorAll(".recordings audio"));
        var kept = players.some(function (audio) { return !audio.paused; }) ? timeline.querySelector(".recordings") : null;
        timeline.innerHTML = html;
        // A recording being played goes on playing: its player is kept as it is, not drawn again.
        var fresh = timeline.querySelector(".recordings");
        if (kept && fresh) { fresh.replaceWith(kept); }
        localizeTimes(timeline);
      });
  }

  function newestCall(root) {
    var first = root.querySelector("details.call");
    return first ? first.dataset.conversation : null;
  }

  function swapIn(html) {
    var current = document.getElementById("calls");
    var opened = {};
    current.querySelectorAll("details.call[open]").forEach(function (details) {
      opened[details.dataset.conversation] = {
        updated: details.dataset.updated,
        timeline: details.querySelector(".timeline")
      };
    });
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var fresh = holder.querySelector("#calls");
    fresh.querySelectorAll("details.call").forEach(function (details) {
      var was = opened[details.dataset.conversation];
      if (!was) { return; }
      // The timeline itself, moved: a recording playing in it goes on playing.
      details.querySelector(".timeline").replaceWith(was.timeline);
      details.open = true;
      if (was.updated !== details.dataset.updated) { loadTimeline(details); }
    });
    localizeTimes(fresh);
    current.replaceWith(fresh);
    var summary = holder.querySelector("#summary");
    if (summary) { document.getElementById("summary").replaceWith(summary); }
    var first = newestCall(fresh);
    if (first !== newest && !summary) { summaryDue = true; }
    newest = first;
  }

  function refresh() {
    if (expired) { return; }
    if (inFlight) {
      wanted = true;
      return;
    }
    clearTimeout(refreshTimer);
    inFlight = true;
    var started = Date.now();
    var version = filterVersion;
    var params = filterQuery();
    // An older page (after "Older calls") stays that page: its calls still change status, none are added.
    var cursor = new URLSearchParams(location.search).get("cursor");
    if (cursor) { params.set("cursor", cursor); }
    params.set("partial", "list");
    var withSummary = summaryDue || Date.now() - summaryAt >= SUMMARY_MS;
    if (withSummary) { params.set("summary", "1"); }
    fetch("/calls?" + params.toString(), { credentials: "same-origin" })
      .then(textOf)
      .then(function (html) {
        if (html === null || expired || version !== filterVersion) { return; }
        if (withSummary) {
          summaryAt = Date.now();
          summaryDue = false;
        }
        if (html === lastList) { return; }
        lastList = html;
        swapIn(html);
      })
      .catch(function () { /* the server is restarting: try again on the next tick */ })
      .then(function () { landed(Date.now() - started); });
  }

  function landed(took) {
    inFlight = false;
    if (expired) { return; }
    if (wanted) {
      wanted = false;
      refresh();
      return;
    }
    refreshTimer = setTimeout(refresh, Math.min(LONGEST_WAIT_MS, Math.max(REFRESH_MS, SLOWDOWN * took)));
  }

  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (details.matches && details.matches("details.call") && details.open) { loadTimeline(details); }
  }, true);

  function applyFilters(event) {
    if (event) { event.preventDefault(); }
    // A new filter starts again from the newest calls.
    var query = filterQuery().toString();
    history.replaceState(null, "", "/calls" + (query ? "?" + query : ""));
    lastList = null;
    summaryDue = true;
    filterVersion += 1;
    refresh();
  }
  form.addEventListener("submit", applyFilters);
  form.addEventListener("change", applyFilters);

  localizeTimes(document);
  refreshTimer = setTimeout(refresh, REFRESH_MS);
  clockTimer = setInterval(function () { localizeTimes(document); }, 30 * 1000);
})();
