// A simulated phone: texts the sandbox's ACS or Twilio number and shows what it received, newest at the
// bottom. The sandbox keeps only what phones receive; what this page sent is kept in the tab (sessionStorage).
"use strict";

const number = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop()).trim();
const phonePath = "/phones/" + encodeURIComponent(number) + "/sms";
const sentKey = "sandbox-phone-sent:" + number;
const gateways = new Map(); // sandbox number -> "ACS" | "Twilio"
let refreshNow = () => {};
let drawnKey = "";
let inbox = [];

function byId(id) {
  return document.getElementById(id);
}

function loadSent() {
  try {
    return JSON.parse(sessionStorage.getItem(sentKey) || "[]");
  } catch (_) {
    return [];
  }
}

function saveSent(items) {
  sessionStorage.setItem(sentKey, JSON.stringify(items.slice(-200)));
}

function gatewayName(sandboxNumber) {
  const name = gateways.get(sandboxNumber);
  return name ? `${sandboxNumber} (${name})` : sandboxNumber;
}

function bubble(item) {
  const node = el("li", "sms " + (item.outgoing ? "out" : "in"));
  node.append(el("div", "text", item.message));
  const meta = el("div", "meta");
  const time = el("time", "", clockTime(item.when));
  time.dateTime = item.when;
  const who = item.outgoing ? "to " + gatewayName(item.to) : "from " + gatewayName(item.from);
  meta.append(who + " · ", time);
  if (item.outgoing) {
    meta.append(" · ", el("span", item.error ? "failed" : "sent", item.error ? "not sent: " + item.error : "sent"));
  }
  node.append(meta);
  return node;
}

function draw() {
  const received = inbox.map((sms) => ({ ...sms, when: sms.receivedTimestamp, outgoing: false }));
  const items = received.concat(loadSent().map((sms) => ({ ...sms, outgoing: true })));
  items.sort((a, b) => Date.parse(a.when) - Date.parse(b.when));
  const key = JSON.stringify(items);
  if (key === drawnKey) return;
  drawnKey = key;
  const list = byId("conversation");
  list.replaceChildren(...items.map(bubble));
  byId("empty").hidden = items.length > 0;
  list.lastElementChild?.scrollIntoView({ block: "end" });
}

async function refresh() {
  const body = await api("GET", phonePath);
  inbox = body.value;
  byId("opted-out").hidden = !body.optedOut;
  draw();
  if (byId("status").dataset.poll) showStatus("");
  delete byId("status").dataset.poll;
}

async function loadNumbers() {
  const select = byId("to");
  const info = await api("GET", "/info");
  gateways.set(info.smsNumber, "ACS");
  try {
    gateways.set((await api("GET", "/twilio")).number, "Twilio");
  } catch (_) {
    // A sandbox without the Twilio stand-in: the ACS number only.
  }
  select.replaceChildren(
    ...[...gateways].map(([value, name]) => {
      const option = el("option", "", `${value} (${name})`);
      option.value = value;
      return option;
    }),
  );
}

async function send(event) {
  event.preventDefault();
  const box = byId("message");
  const message = box.value;
  if (!message.trim()) return;
  const entry = { to: byId("to").value, from: number, message, when: new Date().toISOString() };
  try {
    const answer = await api("POST", phonePath, { to: entry.to, message });
    entry.messageId = answer.messageId;
    box.value = "";
    showStatus("");
  } catch (error) {
    entry.error = error.message;
  }
  saveSent(loadSent().concat([entry]));
  draw();
  refreshNow();
}

document.addEventListener("DOMContentLoaded", async () => {
  byId("number").textContent = number;
  document.title = number + " · Sandbox phone";
  byId("compose").addEventListener("submit", send);
  byId("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      byId("compose").requestSubmit();
    }
  });
  try {
    await loadNumbers();
  } catch (error) {
    showStatus("The sandbox is not answering: " + error.message);
  }
  refreshNow = poll(refresh, 1000, (error) => {
    showStatus(`The sandbox is not answering (${error.message}); trying again every second.`);
    byId("status").dataset.poll = "1";
  });
});
