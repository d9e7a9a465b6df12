// New mail without a reload: listens to the folder's event stream and refreshes the list
// in place. Without JavaScript the page is the same, only refreshed by the member.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!window.EventSource || !window.fetch || !window.DOMParser || !me) return;
  var folder = me.getAttribute("data-folder") || "INBOX";
  var source = new EventSource("/mail/events?f=" + encodeURIComponent(folder));
  var busy = false;
  function refresh() {
    if (busy) return;
    busy = true;
    fetch(location.href, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["rows", "folder-count"].forEach(function (id) {
          var fresh = doc.getElementById(id), old = document.getElementById(id);
          if (fresh && old) old.replaceWith(fresh);
          else if (fresh && !old) location.reload();
        });
        var nav = doc.querySelector("nav.folders"), oldNav = document.querySelector("nav.folders");
        if (nav && oldNav) oldNav.replaceWith(nav);
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  source.addEventListener("mail", refresh);
  window.addEventListener("pagehide", function () { source.close(); });
})();
