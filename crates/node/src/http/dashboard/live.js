// gpunet dashboard: live updates without a reload. The page is complete without this script.
// It follows the node's event stream (GET /v1/events); when a block carries events, and every
// few seconds otherwise (empty blocks send none), it fetches this same page again and swaps in
// each region marked data-live whose content changed. The server stays the only renderer.
"use strict";
(function () {
  var MIN_GAP_MS = 1000;      // at most one refresh a second
  var IDLE_REFRESH_MS = 10000; // and one every ten seconds when nothing is announced
  var RECONNECT_MS = 3000;
  var last = 0;
  var pending = null;
  var busy = false;
  var source = null;

  function regions(doc) {
    return doc.querySelectorAll("[data-live][id]");
  }

  function refresh() {
    pending = null;
    if (busy || document.hidden) { return; }
    busy = true;
    last = Date.now();
    fetch(window.location.href, { cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        regions(document).forEach(function (old) {
          var next = fresh.getElementById(old.id);
          // Leave alone a region the reader is typing or tabbing in.
          if (!next || old.contains(document.activeElement)) { return; }
          if (next.innerHTML !== old.innerHTML) {
            old.innerHTML = next.innerHTML;
            old.classList.remove("live-flash");
            void old.offsetWidth;
            old.classList.add("live-flash");
          }
        });
      })
      .catch(function () { /* the node is away; the next event or tick tries again */ })
      .then(function () { busy = false; });
  }

  function soon() {
    if (pending !== null) { return; }
    var wait = Math.max(0, last + MIN_GAP_MS - Date.now());
    pending = window.setTimeout(refresh, wait);
  }

  function connect() {
    if (!window.EventSource || source !== null) { return; }
    var mine = new EventSource("/v1/events");
    source = mine;
    mine.addEventListener("event", soon);
    // The server ends the stream with an `error` event when this client lags; the browser
    // fires `error` when the connection drops. Either way: start again live, a little later.
    mine.addEventListener("error", function () {
      mine.close();
      if (source === mine) {
        source = null;
        window.setTimeout(connect, RECONNECT_MS);
      }
    });
  }

  // A page left behind (kept by the browser's back/forward cache) would hold its stream, and
  // browsers open at most six connections to one host: the seventh page would wait for one.
  function disconnect() {
    if (source !== null) {
      source.close();
      source = null;
    }
  }

  if (regions(document).length > 0) {
    connect();
    window.setInterval(function () {
      if (Date.now() - last >= IDLE_REFRESH_MS) { soon(); }
    }, IDLE_REFRESH_MS);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { soon(); }
    });
    window.addEventListener("pagehide", disconnect);
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) { connect(); soon(); }
    });
  }
})();
