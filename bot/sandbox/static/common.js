// Shared by the sandbox's pages: element building, the control API, polling, times, and Teams HTML made safe.
// Every piece of data reaches the page as text (textContent, createTextNode, attributes set one by one);
// nothing from the sandbox is ever assigned to innerHTML.
"use strict";

const CONTROL = "/sandbox/v1";

/** A new element with an optional class and text. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

/** Call the control API; resolves to the parsed JSON body, rejects with the sandbox's own error message. */
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(CONTROL + path, init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!resp.ok) {
    const reason = data && data.error && data.error.message;
    const error = new Error(reason || `${resp.status} ${resp.statusText}`);
    error.status = resp.status;
    throw error;
  }
  return data;
}

/** Run `step` now and again `ms` after each run finishes (never two at once); `onError` sees failures. */
function poll(step, ms, onError) {
  let timer = null;
  async function run() {
    clearTimeout(timer);
    try {
      await step();
    } catch (error) {
      onError(error);
    }
    timer = setTimeout(run, ms);
  }
  run();
  return run; // call it to refresh at once, e.g. after a button press
}

/** A line in the page's status area: what went wrong, or nothing. */
function showStatus(text) {
  const node = document.getElementById("status");
  node.textContent = text || "";
  node.hidden = !text;
}

function clockTime(iso) {
  const date = new Date(iso);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// --- Teams HTML, made safe -----------------------------------------------------------------------------------
// Teams users post HTML. It is parsed in an inert document (DOMParser: no scripts run, nothing loads) and
// rebuilt with DOM calls from a small allow-list; everything else keeps only its text.

const KEEP = new Set(["p", "br", "b", "i", "u", "s", "strong", "em", "ul", "ol", "li", "code", "pre", "blockquote"]);
const AS_BLOCK = new Set(["div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "section", "article"]);
const DROP = new Set([
  "script", "style", "template", "iframe", "object", "embed", "noscript", "head", "title", "svg", "math",
  "textarea", "select", "button", "input", "form", "video", "audio", "link", "meta",
]);

function safeHref(raw) {
  try {
    const url = new URL(raw || "");
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

function copyChildren(from, to) {
  for (const child of from.childNodes) copyNode(child, to);
}

function copyNode(node, to) {
  if (node.nodeType === Node.TEXT_NODE) {
    to.append(document.createTextNode(node.data));
    return;
  }
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  const tag = node.localName;
  if (DROP.has(tag)) return;
  if (tag === "at") {
    // <at id="0">Ann</at> is a mention; Teams shows it as a highlighted name.
    to.append(el("span", "mention", "@" + node.textContent.replace(/^@/, "")));
  } else if (tag === "a") {
    const href = safeHref(node.getAttribute("href"));
    if (href === null) {
      copyChildren(node, to);
      return;
    }
    const link = el("a");
    link.href = href;
    link.rel = "noopener noreferrer nofollow";
    link.target = "_blank";
    copyChildren(node, link);
    to.append(link);
  } else if (tag === "img" || tag === "emoji") {
    // Emoji and pictures: their alt text only; the sandbox fetches no images.
    const alt = node.getAttribute("alt");
    if (alt) to.append(document.createTextNode(alt));
  } else if (KEEP.has(tag) || AS_BLOCK.has(tag)) {
    const copy = el(KEEP.has(tag) ? tag : "div");
    copyChildren(node, copy);
    to.append(copy);
  } else {
    copyChildren(node, to); // unknown or presentational (span, font, td...): keep the text
  }
}

/** A DocumentFragment showing Teams message HTML as Teams would, minus anything active. */
function teamsHtml(source) {
  const parsed = new DOMParser().parseFromString(String(source || ""), "text/html");
  const out = document.createDocumentFragment();
  copyChildren(parsed.body, out);
  return out;
}

/** What a plain-text composer sends to Teams: escaped, paragraphs, line breaks. */
function textToHtml(text) {
  const p = el("p");
  text.split("\n").forEach((line, i) => {
    if (i > 0) p.append(el("br"));
    p.append(document.createTextNode(line));
  });
  return p.outerHTML;
}
