// Live inbox: server-sent events from /api/stream update the rows in place (no polling of the list),
// a new emergency or urgent case plays a short tone (Web Audio, generated here) and raises a desktop
// notification (after the browser's permission prompt, asked by a button), and the tab title shows the
// number of unacknowledged cases: "(2) Inbox — MesoCare". Notifications carry no patient details.
(function () {
  "use strict";
  var table = document.getElementById("inbox");
  if (!table) return;
  var tbody = document.getElementById("inbox-rows");
  var status = document.getElementById("poll-status");
  var button = document.getElementById("enable-alerts");
  var alertsState = document.getElementById("alerts-state");
  var url = table.getAttribute("data-stream");
  var TITLE = "Inbox \u2014 MesoCare";
  var RANK = { emergency: 0, urgent: 1, routine: 2 };
  var ALERT_PRIORITIES = { emergency: true, urgent: true };
  var STORE_KEY = "mesocare-inbox-alerted";
  var known = {};
  var audio = null;
  var source = null;
  var quietTimer = null;

  Array.prototype.forEach.call(tbody.querySelectorAll("tr[data-id]"), function (tr) {
    known[tr.getAttribute("data-id")] = true;
  });

  // ---------- alerts already given (this tab session: a reload does not ring again) ----------
  function alerted() {
    try { return JSON.parse(window.sessionStorage.getItem(STORE_KEY) || "{}"); } catch (e) { return {}; }
  }
  function markAlerted(id) {
    var all = alerted();
    all[id] = Date.now();
    try { window.sessionStorage.setItem(STORE_KEY, JSON.stringify(all)); } catch (e) { /* ignore */ }
  }

  // ---------- sound: a short tone generated with the Web Audio API ----------
  function audioContext() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }
  function tone(priority) {
    var ctx = audioContext();
    if (!ctx) return;
    var beeps = priority === "emergency" ? 3 : 2;
    var freq = priority === "emergency" ? 880 : 660;
    for (var i = 0; i < beeps; i++) {
      var t = ctx.currentTime + i * 0.25;
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.25, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.2);
    }
  }

  // ---------- desktop notification ----------
  function canNotify() { return "Notification" in window && window.Notification.permission === "granted"; }
  function notifyDesktop(e) {
    if (!canNotify()) return;
    var words = [e.reason];
    if (e.rules && e.rules.length) words.push(e.rules.join(", "));
    if (e.level) words.push(e.level);
    var n = new window.Notification(e.priority.toUpperCase() + ": new case #" + e.id, {
      body: words.join(" \u00B7 ") + ". Open the MesoCare inbox.",
      tag: "mesocare-case-" + e.id,
      requireInteraction: e.priority === "emergency",
    });
    n.onclick = function () { window.focus(); window.location.href = "/cases/" + e.id; };
  }

  function alertFor(e) {
    if (!e.new || e.status !== "open" || !ALERT_PRIORITIES[e.priority]) return;
    if (known[e.id] || alerted()[e.id]) return;
    markAlerted(e.id);
    tone(e.priority);
    notifyDesktop(e);
  }

  function showAlertsState() {
    var perm = "Notification" in window ? window.Notification.permission : "unsupported";
    var sound = audio && audio.state === "running";
    button.hidden = sound && perm !== "default";
    alertsState.textContent = "Alerts: sound " + (sound ? "on" : "off (press the button)") +
      ", desktop notifications " + ({ granted: "on", denied: "blocked in the browser settings",
        "default": "not allowed yet", unsupported: "not supported" }[perm] || perm) + ".";
  }
  button.addEventListener("click", function () {
    audioContext();
    var asked = "Notification" in window && window.Notification.permission === "default"
      ? window.Notification.requestPermission() : Promise.resolve();
    Promise.resolve(asked).then(showAlertsState, showAlertsState);
    if (audio) audio.resume().then(showAlertsState);
  });
  // Any click or key on the page also unlocks the sound (browsers need a gesture for audio).
  ["pointerdown", "keydown"].forEach(function (type) {
    document.addEventListener(type, function () { audioContext(); setTimeout(showAlertsState, 50); }, { once: true });
  });

  // ---------- rows ----------
  function label(p) {
    return p === "emergency" ? "\u26A0 EMERGENCY" : (p === "urgent" ? "URGENT" : "Routine");
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function age(created) {
    var mins = Math.max(Math.floor((Date.now() - Date.parse(created)) / 60000), 0);
    if (!(mins >= 0)) return "?";
    if (mins < 60) return mins + " min";
    if (mins < 48 * 60) return Math.floor(mins / 60) + " h " + (mins % 60) + " min";
    return Math.floor(mins / 1440) + " d";
  }
  function row(e) {
    var tr = el("tr", null, "row prio-" + e.priority + " new");
    tr.setAttribute("data-id", e.id);
    tr.setAttribute("data-priority", e.priority);
    tr.setAttribute("data-status", e.status);
    tr.setAttribute("data-created", e.created_at);
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
    td = el("td", age(e.created_at));
    td.title = e.created_at;
    tr.appendChild(td);
    td = el("td");
    var a = el("a", "#" + e.id + " \u00B7 " + e.conversation_id);
    a.href = "/cases/" + e.id;
    td.appendChild(a);
    tr.appendChild(td);
    return tr;
  }
  function before(a, b) {  // inbox order: most urgent first, then oldest first
    var ra = RANK[a.priority], rb = RANK[b.getAttribute("data-priority")];
    if (ra !== rb) return ra < rb;
    var ca = a.created_at, cb = b.getAttribute("data-created");
    if (ca !== cb) return ca < cb;
    return Number(a.id) < Number(b.getAttribute("data-id"));
  }
  function upsert(e) {
    var old = tbody.querySelector('tr[data-id="' + e.id + '"]');
    if (old) old.parentNode.removeChild(old);
    if (!e.visible) return;
    var rows = tbody.querySelectorAll("tr[data-id]");
    var next = null;
    for (var i = 0; i < rows.length; i++) { if (before(e, rows[i])) { next = rows[i]; break; } }
    tbody.insertBefore(row(e), next);
  }
  function refreshCounts() {
    var empty = tbody.querySelector("tr.empty");
    var any = tbody.querySelector("tr[data-id]");
    if (any && empty) empty.parentNode.removeChild(empty);
    if (!any && !empty) {
      var tr = el("tr", null, "empty"); var td = el("td", "No escalations match."); td.colSpan = 7;
      tr.appendChild(td); tbody.appendChild(tr);
    }
    Array.prototype.forEach.call(document.querySelectorAll("[data-count]"), function (b) {
      b.textContent = tbody.querySelectorAll('tr[data-priority="' + b.getAttribute("data-count") + '"]').length;
    });
  }
  function setTitle(n) {
    document.title = (n ? "(" + n + ") " : "") + TITLE;
    table.setAttribute("data-unacknowledged", String(n));
  }

  // ---------- the stream ----------
  function setStatus(state, text) {
    status.setAttribute("data-state", state);
    status.textContent = text;
  }
  function onChanges(ev) {
    var data = JSON.parse(ev.data);
    (data.changed || []).forEach(function (e) {
      upsert(e);
      alertFor(e);
      known[e.id] = true;
    });
    if (data.changed && data.changed.length) refreshCounts();
    setTitle(data.unacknowledged_total || 0);
    clearTimeout(quietTimer);
    setStatus("live", "Live. Last update " + new Date().toLocaleTimeString() + ".");
  }
  function connect() {
    source = new window.EventSource(url);
    source.addEventListener("escalations", onChanges);
    source.addEventListener("logout", function () {
      source.close();
      window.location.href = "/login?next=/";
    });
    source.onerror = function () {
      // The server ends each stream after a few seconds and the browser reconnects at once (with the
      // last event id, so nothing is missed): only a longer gap is worth showing.
      clearTimeout(quietTimer);
      quietTimer = setTimeout(function () { setStatus("reconnecting", "Connection lost; reconnecting\u2026"); }, 3000);
      if (source.readyState === window.EventSource.CLOSED) {
        fetch("/api/escalations?status=open&priority=emergency", { credentials: "same-origin" })
          .then(function (r) {
            if (r.status === 401) { window.location.href = "/login?next=/"; return; }
            setTimeout(connect, 2000);
          }, function () { setTimeout(connect, 2000); });
      }
    };
  }
  function refreshAges() {  // "Waiting" keeps counting without a reload
    Array.prototype.forEach.call(tbody.querySelectorAll("tr[data-created]"), function (tr) {
      var cell = tr.children[5];
      if (cell) cell.textContent = age(tr.getAttribute("data-created"));
    });
  }
  showAlertsState();
  setTitle(Number(table.getAttribute("data-unacknowledged") || 0));
  setInterval(refreshAges, 30000);
  connect();
})();
