// Address suggestions in To and Cc while the member types: asks /mail/people for the last
// address being typed and offers a list (arrow keys, Enter or a tap picks one). Without this
// script the fields are plain text fields and the form works the same.
(function () {
  "use strict";
  if (!window.fetch || !window.URLSearchParams) return;
  var DELAY = 200;
  function attach(input) {
    var list = document.createElement("ul");
    list.id = input.id + "-suggestions";
    list.className = "suggestions";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Suggested addresses");
    list.hidden = true;
    input.parentNode.classList.add("suggest-host");
    input.parentNode.appendChild(list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", list.id);
    var timer = 0, asked = "", active = -1, items = [];

    function term() {
      var parts = input.value.split(/[,;]/);
      return parts[parts.length - 1].replace(/^\s+/, "");
    }
    function close() {
      list.hidden = true; list.textContent = ""; items = []; active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }
    function pick(i) {
      var p = items[i];
      if (!p) return;
      var parts = input.value.split(/[,;]/);
      parts[parts.length - 1] = (parts.length > 1 ? " " : "") + p.label;
      input.value = parts.join(",") + ", ";
      close();
      input.focus();
      input.dispatchEvent(new Event("input", {bubbles: true}));
    }
    function mark(i) {
      var nodes = list.children;
      for (var n = 0; n < nodes.length; n++) nodes[n].setAttribute("aria-selected", n === i ? "true" : "false");
      active = i;
      if (i >= 0) input.setAttribute("aria-activedescendant", nodes[i].id);
      else input.removeAttribute("aria-activedescendant");
    }
    function show(people) {
      list.textContent = ""; items = people; active = -1;
      if (!people.length) { close(); return; }
      people.forEach(function (p, i) {
        var li = document.createElement("li");
        li.id = list.id + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        var name = document.createElement("span");
        name.className = "s-name";
        name.textContent = p.name || p.address;
        var addr = document.createElement("span");
        addr.className = "s-addr";
        addr.textContent = p.address;
        li.appendChild(name); li.appendChild(addr);
        li.addEventListener("mousedown", function (e) { e.preventDefault(); pick(i); });
        list.appendChild(li);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }
    function ask() {
      var t = term();
      if (t.length < 2 || t.indexOf("@") > 0 && /\.[a-z]{2,}$/i.test(t)) { close(); return; }
      if (t === asked) return;
      asked = t;
      fetch("/mail/people?" + new URLSearchParams({q: t}), {credentials: "same-origin",
                                                          headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : {people: []}; })
        .then(function (j) { if (asked === t && document.activeElement === input) show(j.people || []); })
        .catch(function () { close(); });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer); asked = asked === term() ? asked : "";
      timer = setTimeout(ask, DELAY);
    });
    input.addEventListener("keydown", function (e) {
      if (list.hidden) return;
      if (e.key === "ArrowDown") { e.preventDefault(); mark((active + 1) % items.length); }
      else if (e.key === "ArrowUp") { e.preventDefault(); mark(active <= 0 ? items.length - 1 : active - 1); }
      else if (e.key === "Enter" && active >= 0) { e.preventDefault(); pick(active); }
      else if (e.key === "Escape") { close(); }
    });
    input.addEventListener("blur", function () { setTimeout(close, 150); });
  }
  ["to", "cc"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) attach(el);
  });
})();
