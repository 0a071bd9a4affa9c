/* MesoCare chat widget: plain JS on socket.io-client (served by the same host, no CDN).
 *
 * Embed: <script src="https://bot.clinic.example/widget/mesocare-widget.js"
 *                 data-socket-url="https://bot.clinic.example" defer></script>
 *
 * Talks to Rasa's socket.io channel (user_uttered / bot_uttered, session_persistence: true).
 * Every text from the bot or the patient is rendered with textContent (never parsed as HTML).
 * Who speaks: a `custom: {data: {speaker: "staff", display_name, parts}}` marker after a text turns its
 * last `parts` bot messages into clinic-team messages; `{kind: "info", parts}` into plain notices
 * (join / hand-back). Neither is ever styled as urgent: that look is for the red-flag advice only.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) { return; }
  var scriptUrl = new URL(script.src, window.location.href);
  var STORE_KEY = "mesocare-widget:v1";
  var SAFE_PROTOCOLS = ["http:", "https:", "tel:", "mailto:"];
  var ACK_TIMEOUT_MS = Number(script.dataset.ackTimeoutMs || 60000);

  var cfg = null;
  var socket = null;
  var ready = false;
  var state = null;
  var ui = {};
  var emergencyRe = null;
  var phoneRe = null;

  // ---------- storage (sessionStorage: this browser tab only) ----------
  function newSessionId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function freshState() {
    return { sessionId: newSessionId(), history: [], open: false, seq: 0 };
  }

  function load() {
    try {
      var raw = window.sessionStorage.getItem(STORE_KEY);
      var parsed = raw ? JSON.parse(raw) : null;
      if (parsed && typeof parsed.sessionId === "string" && Array.isArray(parsed.history)) {
        return parsed;
      }
    } catch (e) { /* storage blocked or corrupt: start fresh */ }
    return freshState();
  }

  function save() {
    try { window.sessionStorage.setItem(STORE_KEY, JSON.stringify(state)); } catch (e) { /* ignore */ }
  }

  // ---------- small DOM helpers ----------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  function safeHref(href) {
    try {
      var url = new URL(href, window.location.href);
      return SAFE_PROTOCOLS.indexOf(url.protocol) >= 0 ? url.href : null;
    } catch (e) { return null; }
  }

  function link(href, label) {
    var a = el("a", { href: href, rel: "noopener noreferrer" }, label);
    if (/^https?:/.test(href)) { a.setAttribute("target", "_blank"); }
    return a;
  }

  // Markdown links [title](url), bare http(s) URLs, e-mail addresses and the clinic's phone numbers.
  var LINK_RE = /\[([^\]]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>"')]+[^\s<>"').,;:!?])|([\w.+-]+@[\w-]+(?:\.[\w-]+)+)/g;

  function appendLine(parent, line) {
    var last = 0;
    var m;
    LINK_RE.lastIndex = 0;
    while ((m = LINK_RE.exec(line)) !== null) {
      appendPhones(parent, line.slice(last, m.index));
      var href = m[2] ? safeHref(m[2]) : m[3] ? safeHref(m[3]) : safeHref("mailto:" + m[4]);
      var label = m[1] || m[3] || m[4];
      parent.appendChild(href ? link(href, label) : document.createTextNode(m[0]));
      last = LINK_RE.lastIndex;
    }
    appendPhones(parent, line.slice(last));
  }

  function appendPhones(parent, text) {
    if (!phoneRe || !text) { parent.appendChild(document.createTextNode(text)); return; }
    var last = 0;
    var m;
    phoneRe.lastIndex = 0;
    while ((m = phoneRe.exec(text)) !== null) {
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      parent.appendChild(link("tel:" + m[0].replace(/[^\d+]/g, ""), m[0]));
      last = phoneRe.lastIndex;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function richText(parent, text) {
    String(text).split("\n").forEach(function (line, i) {
      if (i > 0) { parent.appendChild(el("br")); }
      appendLine(parent, line);
    });
  }

  // ---------- rendering ----------
  function build() {
    var root = el("div", { id: "mesocare-widget", class: "mc-root", "data-mesocare-state": "connecting" });
    var launcher = el("button", {
      type: "button", class: "mc-launcher", "aria-expanded": "false", "aria-controls": "mc-panel",
    }, cfg.launcher_label);
    var panel = el("section", { id: "mc-panel", class: "mc-panel", "aria-labelledby": "mc-title" });
    panel.hidden = true;

    var header = el("div", { class: "mc-header" });
    header.appendChild(el("h2", { id: "mc-title", class: "mc-title" }, cfg.title));
    var newBtn = el("button", { type: "button", class: "mc-new" }, cfg.new_conversation_label);
    var closeBtn = el("button", { type: "button", class: "mc-close", "aria-label": cfg.close_label }, "×");
    header.appendChild(newBtn);
    header.appendChild(closeBtn);

    var status = el("p", { class: "mc-status", role: "status" }, cfg.status_connecting);
    var log = el("div", {
      class: "mc-log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
      "aria-label": cfg.title + " conversation", tabindex: "0",
    });
    var typing = el("p", { class: "mc-typing" });
    typing.appendChild(el("span", { class: "mc-dots", "aria-hidden": "true" }, "● ● ●"));
    typing.appendChild(el("span", { class: "mc-typing-text" }, " " + cfg.typing_label));
    typing.hidden = true;

    var form = el("form", { class: "mc-form", autocomplete: "off" });
    var label = el("label", { for: "mc-input", class: "mc-label" }, cfg.input_label);
    var input = el("input", {
      id: "mc-input", class: "mc-input", type: "text", maxlength: "1000",
      placeholder: cfg.input_placeholder, autocomplete: "off",
    });
    var send = el("button", { type: "submit", class: "mc-send" }, cfg.send_label);
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(send);

    panel.appendChild(header);
    panel.appendChild(status);
    panel.appendChild(log);
    panel.appendChild(typing);
    panel.appendChild(form);
    root.appendChild(panel);
    root.appendChild(launcher);
    document.body.appendChild(root);

    ui = { root: root, launcher: launcher, panel: panel, status: status, log: log, typing: typing,
      form: form, input: input, send: send, newBtn: newBtn, closeBtn: closeBtn };

    launcher.addEventListener("click", function () { setOpen(!state.open, true); });
    closeBtn.addEventListener("click", function () { setOpen(false, true); });
    panel.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { setOpen(false, true); }
    });
    newBtn.addEventListener("click", newConversation);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = input.value.trim();
      if (!text) { return; }
      input.value = "";
      sendUser(text, text);
    });
  }

  function setOpen(open, moveFocus) {
    state.open = open;
    save();
    ui.panel.hidden = !open;
    ui.root.setAttribute("data-open", String(open));
    ui.launcher.setAttribute("aria-expanded", String(open));
    if (moveFocus) { (open ? ui.input : ui.launcher).focus(); }
    if (open) { scrollDown(); }
  }

  function renderNotice() {
    var notice = el("div", { class: "mc-msg mc-msg--site mc-notice" });
    notice.appendChild(el("p", {}, cfg.greeting));
    notice.appendChild(el("p", { class: "mc-privacy" }, cfg.privacy_notice));
    var em = el("p", { class: "mc-not-emergency" });
    richText(em, cfg.emergency_notice);
    notice.appendChild(em);
    ui.log.appendChild(notice);
  }

  function renderAll() {
    ui.log.textContent = "";
    renderNotice();
    state.history.forEach(function (entry) { ui.log.appendChild(renderEntry(entry)); });
    updateTyping();
    scrollDown();
  }

  function speakerOf(entry) {
    if (entry.from === "user") { return cfg.you_label || "You"; }
    if (entry.speaker === "staff") {
      var team = cfg.staff_label || "Clinic team";
      return entry.displayName ? team + " (" + entry.displayName + ")" : team;
    }
    if (entry.kind === "info") { return cfg.info_label || "Information"; }
    return cfg.assistant_label || "Assistant";
  }

  function renderEntry(entry) {
    var wrap = el("div", { class: "mc-msg mc-msg--" + entry.from, "data-entry-id": String(entry.id) });
    var staff = entry.speaker === "staff";
    var info = entry.kind === "info";
    if (staff) { wrap.classList.add("mc-msg--staff"); wrap.setAttribute("data-speaker", "staff"); }
    if (info) { wrap.classList.add("mc-msg--info"); wrap.setAttribute("data-kind", "info"); }
    if (entry.urgency && !staff && !info) {
      wrap.classList.add("mc-msg--" + entry.urgency);
      wrap.setAttribute("data-urgency", entry.urgency);
      wrap.appendChild(el("strong", { class: "mc-urgency-label" }, cfg.emergency_label));
    }
    var body = el("p", { class: "mc-text" });
    if (entry.from === "bot") { richText(body, entry.text); } else { body.textContent = entry.text; }
    // Screen readers hear "<speaker>: <text>"; the clinic team's name is also shown (not colour alone).
    var who = speakerOf(entry);
    if (staff) {
      body.insertBefore(el("span", { class: "mc-visually-hidden" }, ": "), body.firstChild);
      body.insertBefore(el("span", { class: "mc-speaker" }, who), body.firstChild);
    } else {
      body.insertBefore(el("span", { class: "mc-visually-hidden" }, who + ": "), body.firstChild);
    }
    wrap.appendChild(body);

    if (entry.from === "user" && entry.status === "queued") {
      wrap.classList.add("mc-msg--pending");
      wrap.appendChild(el("p", { class: "mc-delivery" }, cfg.queued_label));
    } else if (entry.from === "user" && entry.status === "failed") {
      wrap.classList.add("mc-msg--failed");
      var fail = el("p", { class: "mc-delivery" }, cfg.not_sent_label + " ");
      var retry = el("button", { type: "button", class: "mc-retry" }, cfg.retry_label);
      retry.addEventListener("click", function () { entry.status = "queued"; save(); refresh(entry); flush(); });
      fail.appendChild(retry);
      wrap.appendChild(fail);
    }

    if (entry.buttons && entry.buttons.length && !entry.used) {
      var group = el("div", { class: "mc-quick", role: "group", "aria-label": "Suggested replies" });
      entry.buttons.forEach(function (b) {
        var btn = el("button", { type: "button", class: "mc-quick-btn" }, b.title);
        btn.addEventListener("click", function () { sendUser(b.payload, b.title); });
        group.appendChild(btn);
      });
      wrap.appendChild(group);
    }
    return wrap;
  }

  function refresh(entry) {
    var old = ui.log.querySelector('[data-entry-id="' + entry.id + '"]');
    var fresh = renderEntry(entry);
    if (old) { old.replaceWith(fresh); } else { ui.log.appendChild(fresh); }
  }

  function scrollDown() { ui.log.scrollTop = ui.log.scrollHeight; }

  function updateTyping() {
    var waiting = state.history.some(function (e) { return e.from === "user" && e.status === "sent"; });
    ui.typing.hidden = !waiting;
  }

  function setStatus(kind, text) {
    ui.root.setAttribute("data-mesocare-state", kind);
    ui.status.textContent = text;
    ui.status.className = "mc-status mc-status--" + kind;
  }

  function add(entry) {
    entry.id = ++state.seq;
    state.history.push(entry);
    save();
    ui.log.appendChild(renderEntry(entry));
    scrollDown();
    return entry;
  }

  // ---------- conversation ----------
  function retireQuickReplies() {
    state.history.forEach(function (e) {
      if (e.buttons && e.buttons.length && !e.used) { e.used = true; refresh(e); }
    });
  }

  function sendUser(payload, shown) {
    retireQuickReplies();
    var entry = add({ from: "user", text: shown, payload: payload, status: "queued" });
    if (ready) { emitEntry(entry); } else { refresh(entry); }
  }

  function emitEntry(entry) {
    entry.status = "sent";
    save();
    refresh(entry);
    updateTyping();
    var sessionId = state.sessionId;
    // Rasa's handler returns after the whole turn is processed: python-socketio then acknowledges.
    socket.timeout(ACK_TIMEOUT_MS).emit(
      "user_uttered", { message: entry.payload, session_id: sessionId },
      function (err) {
        if (sessionId !== state.sessionId || entry.status !== "sent") { return; }
        entry.status = err ? (ready ? "failed" : "queued") : "delivered";
        save();
        refresh(entry);
        updateTyping();
        if (entry.status === "queued") { flush(); }
      }
    );
  }

  function flush() {
    if (!ready) { return; }
    state.history.forEach(function (e) {
      if (e.from === "user" && e.status === "queued") { emitEntry(e); }
    });
  }

  // The bot messages since the patient's last message, back to (not across) a clinic-team message or
  // notice: those belong to another response.
  function currentTurnBotEntries() {
    var out = [];
    for (var i = state.history.length - 1; i >= 0; i--) {
      var e = state.history[i];
      if (e.from !== "bot" || e.speaker || e.kind) { break; }
      out.push(e);
    }
    return out;
  }

  function lastBotEntries(n) {
    var out = [];
    for (var i = state.history.length - 1; i >= 0 && out.length < n; i--) {
      var e = state.history[i];
      if (e.from !== "bot") { break; }
      out.push(e);
    }
    return out;
  }

  // `{speaker: "staff", display_name, parts}` or `{kind: "info", parts}` follows the text it belongs to.
  function markSpeaker(msg) {
    var parts = Math.min(Math.max(parseInt(msg.parts, 10) || 1, 1), 20);
    lastBotEntries(parts).forEach(function (e) {
      e.urgency = null;
      if (msg.kind === "info") {
        e.kind = "info";
      } else {
        e.speaker = "staff";
        e.displayName = typeof msg.display_name === "string" ? msg.display_name.slice(0, 64) : "";
      }
      refresh(e);
    });
    save();
    scrollDown();  // the speaker's name makes the bubble taller
  }

  function onBotMessage(msg) {
    if (!msg || typeof msg !== "object") { return; }
    var urgency = msg.urgency === "emergency" || msg.urgency === "urgent" ? msg.urgency : null;
    var text = typeof msg.text === "string" ? msg.text : null;
    if (text === null && (msg.speaker === "staff" || msg.kind === "info")) {
      markSpeaker(msg);
      return;
    }
    if (text === null && urgency) {
      // A `custom: {data: {urgency: ...}}` marker follows the text of the same response.
      currentTurnBotEntries().forEach(function (e) {
        if (!e.urgency || e.urgency === "urgent") { e.urgency = urgency; refresh(e); }
      });
      save();
      return;
    }
    if (text === null) { return; }
    if (!urgency && emergencyRe && emergencyRe.test(text)) { urgency = "emergency"; }
    var replies = msg.quick_replies || msg.buttons || [];
    var buttons = replies.filter(function (b) { return b && b.title; }).map(function (b) {
      return { title: String(b.title), payload: String(b.payload || b.title) };
    });
    add({ from: "bot", text: text, urgency: urgency, buttons: buttons });
  }

  function connect() {
    setStatus("connecting", cfg.status_connecting);
    socket = window.io(cfg.socket_url, {
      path: cfg.socket_path || "/socket.io",
      transports: ["websocket", "polling"],
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
    });
    socket.on("connect", function () {
      socket.emit("session_request", { session_id: state.sessionId });
    });
    socket.on("session_confirm", function (sessionId) {
      if (sessionId !== state.sessionId) { return; }
      ready = true;
      setStatus("online", cfg.status_online);
      flush();
    });
    socket.on("disconnect", function (reason) {
      ready = false;
      if (reason === "io server disconnect") { socket.connect(); }  // not retried by socket.io itself
      setStatus("offline", cfg.status_offline);
      // Anything sent but not acknowledged goes back to the queue, resent after reconnecting.
      state.history.forEach(function (e) {
        if (e.from === "user" && e.status === "sent") { e.status = "queued"; refresh(e); }
      });
      save();
      updateTyping();
    });
    socket.on("connect_error", function () {
      if (!ready) { setStatus("offline", cfg.status_offline); }
    });
    socket.on("bot_uttered", onBotMessage);
  }

  function newConversation() {
    var wasOpen = state.open;
    state = freshState();
    state.open = wasOpen;
    save();
    ready = false;
    renderAll();
    socket.disconnect();
    setStatus("connecting", cfg.status_connecting);
    socket.connect();
    ui.input.focus();
  }

  // ---------- start-up ----------
  function compilePatterns() {
    if (cfg.emergency_text_pattern) {
      try { emergencyRe = new RegExp(cfg.emergency_text_pattern, "i"); } catch (e) { emergencyRe = null; }
    }
    var phones = (cfg.phone_numbers || []).filter(Boolean).map(function (p) {
      return escapeRe(p).replace(/\\? /g, "\\s?");
    });
    phoneRe = phones.length ? new RegExp("(?:^|\\b)(?:" + phones.join("|") + ")\\b", "g") : null;
  }

  function loadSocketIo(done) {
    if (window.io) { done(); return; }
    var s = document.createElement("script");
    s.src = new URL("vendor/socket.io.min.js", scriptUrl).href;
    s.onload = done;
    document.head.appendChild(s);
  }

  function loadCss() {
    var l = document.createElement("link");
    l.rel = "stylesheet";
    l.href = new URL("mesocare-widget.css", scriptUrl).href;
    document.head.appendChild(l);
  }

  function start(config) {
    cfg = config;
    if (script.dataset.socketUrl) { cfg.socket_url = script.dataset.socketUrl; }
    compilePatterns();
    state = load();
    // Sent before a reload but never acknowledged: the answer is lost with the old page, so send again.
    state.history.forEach(function (e) { if (e.from === "user" && e.status === "sent") { e.status = "queued"; } });
    save();
    build();
    renderAll();
    setOpen(!!state.open, false);
    loadSocketIo(connect);
  }

  loadCss();
  var configUrl = script.dataset.configUrl || new URL("config.json", scriptUrl).href;
  fetch(configUrl, { credentials: "omit" })
    .then(function (r) { return r.json(); })
    .then(start);
})();
