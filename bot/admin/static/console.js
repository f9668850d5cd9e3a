// Shared by the console's pages: building elements safely, calling the admin API, following the event stream.
// Everything shown comes from data: it goes in as text (textContent / text nodes), never as HTML.
"use strict";

const Bridge = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  /** An element with attributes and children; strings become text nodes, null and false are skipped. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A cell with a label, which the phone layout shows in front of the value. */
  function cell(label, ...children) {
    return el("td", { "data-label": label }, ...children);
  }

  function time(iso) {
    if (!iso) return "–";
    const at = new Date(iso);
    const sameDay = at.toDateString() === new Date().toDateString();
    const clock = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return sameDay ? clock : `${at.toLocaleDateString()} ${clock}`;
  }

  function timeEl(iso) {
    return iso ? el("time", { datetime: iso, title: iso }, time(iso)) : "–";
  }

  const STATE_NAMES = {
    requested: "requested", joining: "joining", lobby: "in the lobby", in_call: "in the call",
    left: "left", ended: "ended", failed: "failed",
  };

  function stateBadge(state, condition) {
    if (condition === "chat_refused") return el("span", { class: "badge state-refused" }, "in the call, chat refused");
    return el("span", { class: `badge state-${state}` }, STATE_NAMES[state] || state);
  }

  /** The page's banner (if it has one) naming the meetings whose chat refuses the bridge's guests right now. */
  function refusedBanner(list) {
    const banner = document.getElementById("chat-refused");
    if (!banner) return;
    banner.hidden = !list || list.length === 0;
    if (banner.hidden) return;
    banner.replaceChildren(
      el("strong", {}, "Meeting chat refused. "),
      ...list.map((m) => el("span", { class: "refused" },
        `“${m.name}” (code ${m.code}) refuses guest chat though ${m.sessions} ${m.sessions === 1 ? "guest is" : "guests are"}`
        + ` in the call: ${m.reason || "no reason given"}. Their messages are kept for a while and sent if it clears. `)));
  }

  /** Call the admin API with the session cookie and the CSRF token: {ok, status, data}. */
  async function api(method, path, body) {
    const headers = { "X-CSRF-Token": csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, data: { reason: "the bridge did not answer" } };
    }
    if (response.status === 401) {
      window.location.reload(); // signed out: the page becomes the sign-in form
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (err) { data = { reason: text }; }
    return { ok: response.ok, status: response.status, data };
  }

  function reasonOf(result) {
    return (result.data && result.data.reason) || `HTTP ${result.status}`;
  }

  function say(node, text, ok) {
    node.textContent = text;
    node.className = `result ${ok ? "ok" : "bad"}`;
  }

  /** Follow /console/events, calling onSnapshot with each snapshot; reconnects, and reloads once signed out. */
  function live(query, onSnapshot) {
    const badge = document.getElementById("live");
    let delay = 1000;
    const show = (text, cls) => { badge.textContent = text; badge.className = `live ${cls}`; };
    function connect() {
      const source = new EventSource(`/console/events${query}`);
      source.addEventListener("open", () => { delay = 1000; show("live", "on"); });
      source.addEventListener("snapshot", (event) => {
        const snap = JSON.parse(event.data);
        refusedBanner(snap.chatRefused);
        onSnapshot(snap);
      });
      source.addEventListener("signedout", () => { source.close(); window.location.reload(); });
      source.addEventListener("error", async () => {
        show("reconnecting…", "off");
        if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
        const check = await fetch("/console/session", { credentials: "same-origin" }).catch(() => null);
        if (check && check.status === 401) { window.location.reload(); return; }
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      });
    }
    connect();
  }

  return { el, cell, time, timeEl, stateBadge, api, reasonOf, say, live };
})();
