// Polls the inbox JSON endpoint and re-renders the rows, so new escalations appear without a reload.
(function () {
  "use strict";
  var table = document.getElementById("inbox");
  if (!table) return;
  var tbody = document.getElementById("inbox-rows");
  var status = document.getElementById("poll-status");
  var url = table.getAttribute("data-poll");
  var seen = null;
  var INTERVAL_MS = 2000;

  function label(p) {
    return p === "emergency" ? "\u26A0 EMERGENCY" : (p === "urgent" ? "URGENT" : "Routine");
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(e, isNew) {
    var tr = el("tr", null, "row prio-" + e.priority + (isNew ? " new" : ""));
    tr.setAttribute("data-id", e.id);
    var td = el("td");
    td.appendChild(el("span", label(e.priority), "badge prio-" + e.priority));
    if (e.level) { td.appendChild(document.createTextNode(" ")); td.appendChild(el("small", e.level)); }
    tr.appendChild(td);
    td = el("td", e.status);
    if (e.assigned_to) { td.appendChild(el("br")); td.appendChild(el("small", e.assigned_to)); }
    tr.appendChild(td);
    tr.appendChild(el("td", e.reason));
    tr.appendChild(el("td", (e.rules || []).join(", ")));
    td = el("td", e.contact_name || "\u2014");
    if (e.contact_phone) { td.appendChild(el("br")); td.appendChild(el("small", e.contact_phone)); }
    tr.appendChild(td);
    tr.appendChild(el("td", e.age));
    td = el("td");
    var a = el("a", "#" + e.id + " \u00B7 " + e.conversation_id);
    a.href = "/cases/" + e.id;
    td.appendChild(a);
    tr.appendChild(td);
    return tr;
  }
  function render(data) {
    var ids = {};
    if (seen === null) {
      seen = {};
      Array.prototype.forEach.call(tbody.querySelectorAll("tr[data-id]"), function (tr) { seen[tr.getAttribute("data-id")] = true; });
    }
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    data.items.forEach(function (e) {
      tbody.appendChild(row(e, !seen[e.id]));
      ids[e.id] = true;
    });
    if (!data.items.length) {
      var tr = el("tr", null, "empty"); var td = el("td", "No escalations match."); td.colSpan = 7;
      tr.appendChild(td); tbody.appendChild(tr);
    }
    seen = ids;
    Object.keys(data.counts || {}).forEach(function (p) {
      var b = document.querySelector('[data-count="' + p + '"]');
      if (b) b.textContent = data.counts[p];
    });
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location = "/login?next=/"; throw new Error("logged out"); }
        return r.json();
      })
      .then(function (data) { render(data); status.textContent = "Last update " + new Date().toLocaleTimeString() + "."; })
      .catch(function (err) { status.textContent = "Update failed (" + err.message + "); retrying."; })
      .finally(function () { setTimeout(poll, INTERVAL_MS); });
  }
  setTimeout(poll, INTERVAL_MS);
})();
