// edgebridge fleet page: refresh the live part of the page by itself (plain JS, no framework).
// The server renders only that part when asked with the X-Fleet-Partial header.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var updated = document.getElementById("updated");
  var seconds = live ? Number(live.dataset.refresh || 0) : 0;
  if (!live || !seconds) return;
  var busy = false;

  function stamp(text) {
    if (updated) updated.textContent = text;
  }

  function refresh() {
    if (busy || document.hidden) return;
    // Do not replace the page under a user typing in a filter.
    var focused = document.activeElement;
    if (focused && live.contains(focused) && focused.matches("input, select")) return;
    busy = true;
    fetch(window.location.href, { headers: { "X-Fleet-Partial": "1" }, credentials: "same-origin" })
      .then(function (resp) {
        if (resp.status === 401) {
          window.location.href = "/ui/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          return null;
        }
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.text();
      })
      .then(function (html) {
        if (html === null) return;
        live.innerHTML = html;
        stamp("updated " + new Date().toLocaleTimeString());
      })
      .catch(function () {
        stamp("cloudhub unreachable, retrying…");
      })
      .finally(function () {
        busy = false;
      });
  }

  stamp("updated " + new Date().toLocaleTimeString());
  window.setInterval(refresh, seconds * 1000);
})();
