// A meeting as its organizer sees it in Teams: call state, the chat, the roster with the lobby, posting as a
// Teams user. Polls the control API every second; only what changed is redrawn.
"use strict";

const meetingId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
const base = "/meetings/" + encodeURIComponent(meetingId);
const STATES = { notStarted: "Not started", live: "Live", ended: "Ended" };
const LOBBY = {
  auto: "Everyone comes straight in once the meeting has started.",
  manual: "The organizer admits each person from the lobby.",
};

let meeting = null;
let refreshNow = () => {};
let selectAfterRefresh = null;
const drawn = { head: "", roster: "", users: "" };
const shown = new Map(); // message id -> { version, node }

function byId(id) {
  return document.getElementById(id);
}

async function act(step) {
  try {
    await step();
    showStatus("");
  } catch (error) {
    showStatus(error.message);
  }
  refreshNow();
}

function button(label, className, ariaLabel, step) {
  const node = el("button", className, label);
  node.type = "button";
  node.setAttribute("aria-label", ariaLabel);
  node.addEventListener("click", () => act(step));
  return node;
}

function initials(name) {
  const words = name.replace(/\(.*?\)/g, "").split(/\s+/).filter((word) => /^\p{L}/u.test(word));
  return words.slice(0, 2).map((word) => word[0].toUpperCase()).join("") || "?";
}

// --- header ------------------------------------------------------------------------------------------------

function drawHead() {
  const key = JSON.stringify([meeting.subject, meeting.callState, meeting.lobby, meeting.shortUrl]);
  if (key === drawn.head) return;
  drawn.head = key;
  document.title = meeting.subject + " · Sandbox Teams";
  byId("subject").textContent = meeting.subject;
  const state = byId("call-state");
  state.textContent = STATES[meeting.callState] || meeting.callState;
  state.dataset.state = meeting.callState;
  state.className = "state state-" + meeting.callState;
  byId("start").disabled = meeting.callState === "live";
  byId("end").disabled = meeting.callState !== "live";
  byId("organizer").textContent = meeting.organizer.displayName;
  byId("join-code").textContent = meeting.joinMeetingId;
  byId("passcode").textContent = meeting.passcode;
  byId("short-link").textContent = meeting.shortUrl;
  byId("join-link").textContent = meeting.joinWebUrl;
  byId("lobby-policy").textContent = LOBBY[meeting.lobby] || meeting.lobby;
}

// --- roster ------------------------------------------------------------------------------------------------

function person(entry, buttons) {
  const item = el("li", "person");
  item.dataset.id = entry.id;
  item.append(el("span", "avatar" + (entry.kind === "acs" ? " external" : ""), initials(entry.displayName)));
  const who = el("span", "who");
  who.append(el("span", "name", entry.displayName));
  if (entry.id === meeting.organizerId) who.append(el("span", "role", "organizer"));
  if (entry.kind === "acs") who.append(el("span", "role", "external (ACS)"));
  item.append(who);
  const actions = el("span", "actions");
  actions.append(...buttons);
  item.append(actions);
  return item;
}

function remove(entry) {
  return button("Remove", "danger", "Remove " + entry.displayName, () =>
    api("DELETE", `${base}/participants/${encodeURIComponent(entry.id)}`),
  );
}

function drawRoster() {
  const key = JSON.stringify(meeting.roster);
  if (key === drawn.roster) return;
  drawn.roster = key;
  const inCall = byId("in-call");
  const lobby = byId("lobby");
  inCall.replaceChildren(
    ...meeting.roster.inCall.map((entry) => person(entry, entry.id === meeting.organizerId ? [] : [remove(entry)])),
  );
  lobby.replaceChildren(
    ...meeting.roster.lobby.map((entry) => {
      const admit = button("Admit", "primary", "Admit " + entry.displayName, () =>
        api("POST", `${base}/lobby/${encodeURIComponent(entry.id)}/admit`),
      );
      return person(entry, [admit, remove(entry)]);
    }),
  );
  if (!meeting.roster.inCall.length) inCall.append(el("li", "muted", "Nobody"));
  if (!meeting.roster.lobby.length) lobby.append(el("li", "muted", "Nobody"));
  byId("in-call-count").textContent = String(meeting.roster.inCall.length);
  byId("lobby-count").textContent = String(meeting.roster.lobby.length);
}

// --- who may post: the organizer and the Teams users the chat says are in it ---------------------------------

function teamsUsers(messages) {
  const users = new Map([[meeting.organizerId, meeting.organizer.displayName + " (organizer)"]]);
  for (const message of messages) {
    if (message.type !== "participantAdded" && message.type !== "participantRemoved") continue;
    for (const p of message.content.participants || []) {
      const who = p.communicationIdentifier || {};
      if (!who.microsoftTeamsUser || !who.rawId) continue;
      if (message.type === "participantAdded") users.set(who.rawId, p.displayName || who.rawId);
      else users.delete(who.rawId);
    }
  }
  return users;
}

function drawPostAs(messages) {
  const users = teamsUsers(messages);
  const key = JSON.stringify([...users]) + selectAfterRefresh;
  if (key === drawn.users) return;
  drawn.users = key;
  const select = byId("post-as");
  const wanted = selectAfterRefresh || select.value;
  select.replaceChildren(
    ...[...users].map(([id, name]) => {
      const option = el("option", "", name);
      option.value = id;
      return option;
    }),
  );
  if (users.has(wanted)) select.value = wanted;
  if (selectAfterRefresh && users.has(selectAfterRefresh)) selectAfterRefresh = null;
}

// --- chat --------------------------------------------------------------------------------------------------

function systemText(message) {
  if (message.type === "topicUpdated") return `The topic is now "${message.content.topic}"`;
  const names = (message.content.participants || []).map((p) => p.displayName || "Someone").join(", ");
  return `${names} ${message.type === "participantAdded" ? "joined" : "left"}`;
}

function messageNode(message) {
  const time = el("time", "time", clockTime(message.createdOn));
  time.dateTime = message.createdOn;
  time.title = new Date(message.createdOn).toLocaleString();
  if (message.type !== "text" && message.type !== "html" && message.type !== "richtext/html") {
    const item = el("li", "system");
    item.dataset.id = message.id;
    item.append(el("span", "", systemText(message)), " ", time);
    return item;
  }
  const sender = message.senderCommunicationIdentifier || {};
  const item = el("li", "message");
  item.dataset.id = message.id;
  if (sender.communicationUser) item.classList.add("external");
  if (sender.rawId === meeting.organizerId) item.classList.add("mine");
  const meta = el("div", "meta");
  meta.append(el("span", "sender", message.senderDisplayName || "Unknown"), " ", time);
  if (message.editedOn && !message.deletedOn) meta.append(" ", el("span", "mark", "Edited"));
  const body = el("div", "body");
  if (message.deletedOn) {
    body.classList.add("deleted");
    body.textContent = "This message has been deleted.";
  } else if (message.type === "text") {
    body.textContent = message.content.message;
  } else {
    body.append(teamsHtml(message.content.message));
  }
  item.append(meta, body);
  return item;
}

function drawChat(messages) {
  const chat = byId("chat");
  const ids = new Set(messages.map((m) => m.id));
  if ([...shown.keys()].some((id) => !ids.has(id))) {
    shown.clear();
    chat.replaceChildren();
  }
  const atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
  let added = false;
  for (const message of messages) {
    const seen = shown.get(message.id);
    if (seen && seen.version === message.version) continue;
    const node = messageNode(message);
    if (seen) seen.node.replaceWith(node);
    else chat.append(node);
    shown.set(message.id, { version: message.version, node });
    added = added || !seen;
  }
  byId("chat-empty").hidden = messages.length > 0;
  if (added && atBottom) chat.scrollTop = chat.scrollHeight;
}

// --- wiring ------------------------------------------------------------------------------------------------

async function refresh() {
  const [current, thread] = await Promise.all([api("GET", base), api("GET", base + "/messages")]);
  meeting = current;
  drawHead();
  drawRoster();
  drawPostAs(thread.value);
  drawChat(thread.value);
  if (byId("status").dataset.poll) showStatus("");
  delete byId("status").dataset.poll;
}

function pollFailed(error) {
  showStatus(
    error.status === 404
      ? "This meeting no longer exists: the sandbox was reset or restarted."
      : `The sandbox is not answering (${error.message}); trying again every second.`,
  );
  byId("status").dataset.poll = "1";
}

document.addEventListener("DOMContentLoaded", () => {
  refreshNow = poll(refresh, 1000, pollFailed);
  byId("start").addEventListener("click", () => act(() => api("POST", base + "/start")));
  byId("end").addEventListener("click", () => act(() => api("POST", base + "/end")));

  const text = byId("text");
  byId("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = text.value;
    if (!typed.trim()) return;
    const html = byId("as-html").checked ? typed : textToHtml(typed);
    act(async () => {
      await api("POST", base + "/messages", { from: byId("post-as").value, html });
      text.value = "";
    });
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      byId("compose").requestSubmit();
    }
  });

  byId("add-user").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = byId("new-user");
    act(async () => {
      const user = await api("POST", base + "/teams-users", { displayName: name.value });
      selectAfterRefresh = user.id;
      name.value = "";
    });
  });
});
