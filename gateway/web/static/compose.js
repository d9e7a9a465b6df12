// Saves the message being written to Drafts every few seconds while it changes, so that
// nothing is lost if the iPad sleeps or the signal drops. The form works without this.
(function () {
  "use strict";
  var form = document.getElementById("compose-form");
  if (!form || !window.fetch || !window.FormData) return;
  var every = parseInt(form.getAttribute("data-autosave"), 10) || 0;
  var status = document.getElementById("compose-status");
  var dirty = false, busy = false, unsaved = false, leaving = false, typed = 0;
  form.addEventListener("input", function () { dirty = true; unsaved = true; typed++; });
  // Send, Save and Close all submit the form, and Close saves what changed: no warning
  // then. Leaving any other way (a link, the back button) with typing not yet autosaved
  // asks first.
  form.addEventListener("submit", function () { leaving = true; });
  window.addEventListener("beforeunload", function (e) {
    if (!unsaved || leaving) return;
    e.preventDefault();
    e.returnValue = "";
  });
  function save() {
    if (!dirty || busy) return;
    busy = true; dirty = false;
    var at = typed;
    var data = new FormData(form);
    data.set("do", "autosave");
    data.delete("attach");  // files go with Save or Send, not with every autosave
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (j.saved && typed === at) unsaved = false;
        if (status) status.textContent = j.notice || j.error || "";
      })
      .catch(function () { dirty = true; if (status) status.textContent = "Not saved yet: no connection."; })
      .then(function () { busy = false; });
  }
  if (every > 0) setInterval(save, every * 1000);
})();
