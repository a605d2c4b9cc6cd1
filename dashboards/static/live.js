// Live refresh: when the feed announces an evaluation, fetch this page's main section again
// and swap it in; the "updated" time follows. Falls back to polling if the feed is unavailable.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var updated = document.getElementById("updated-at");
  var state = document.getElementById("live-state");
  if (!main || !main.dataset.fragment) { return; }
  var fragment = main.dataset.fragment;
  var busy = false;

  function show(when) {
    if (!when || !updated) { return; }
    updated.setAttribute("datetime", when);
    updated.textContent = when.slice(0, 19).replace("T", " ") + " UTC";
  }

  function refresh(when) {
    if (busy) { return; }
    busy = true;
    fetch(fragment, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null) {
          main.innerHTML = html;
          show(when);
          document.dispatchEvent(new CustomEvent("flowsight:refreshed", { detail: { evaluatedAt: when } }));
        }
      })
      .catch(function () { /* the next event tries again */ })
      .finally(function () { busy = false; });
  }

  function poll() {
    setInterval(function () { refresh(new Date().toISOString()); }, 30000);
  }

  if (!window.EventSource) { poll(); return; }
  var source = new EventSource("/api/feed");
  var last = updated ? updated.getAttribute("datetime") : "";
  source.addEventListener("open", function () { if (state) { state.className = "live-state on"; } });
  source.addEventListener("error", function () { if (state) { state.className = "live-state off"; } });
  source.addEventListener("evaluation", function (event) {
    var data = JSON.parse(event.data);
    if (data.evaluated_at && data.evaluated_at !== last) {
      last = data.evaluated_at;
      refresh(data.evaluated_at);
    }
  });
  source.addEventListener("alerts", function () {
    if (document.body.classList.contains("page-alerts")) { refresh(last); }
  });
})();
