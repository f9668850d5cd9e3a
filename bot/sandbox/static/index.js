// The index: the sandbox's meetings (refreshed every two seconds), a form to create one, and phone links.
"use strict";

const STATE_NAMES = { notStarted: "not started", live: "live", ended: "ended" };
let lastMeetings = "";

function renderMeetings(meetings) {
  const list = document.getElementById("meetings");
  list.replaceChildren();
  for (const meeting of meetings) {
    const item = el("li", "meeting");
    const link = el("a", "subject", meeting.subject);
    link.href = "/sandbox/ui/meetings/" + encodeURIComponent(meeting.id);
    const state = el("span", "state state-" + meeting.callState, STATE_NAMES[meeting.callState] || meeting.callState);
    const people = meeting.roster.inCall.length + " in the call, " + meeting.roster.lobby.length + " in the lobby";
    const details = el("span", "muted", `organized by ${meeting.organizer.displayName} · ${people}`);
    item.append(link, " ", state, el("br"), details);
    list.append(item);
  }
  document.getElementById("no-meetings").hidden = meetings.length > 0;
}

async function refresh() {
  const body = await api("GET", "/meetings");
  const key = JSON.stringify(body.value);
  if (key !== lastMeetings) {
    lastMeetings = key;
    renderMeetings(body.value);
  }
  showStatus("");
}

document.addEventListener("DOMContentLoaded", () => {
  const again = poll(refresh, 2000, (error) => showStatus("The sandbox is not answering: " + error.message));

  document.getElementById("new-meeting").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "/meetings", {
        subject: document.getElementById("new-subject").value,
        organizer: { displayName: document.getElementById("new-organizer").value },
        lobby: document.getElementById("new-lobby").value,
      });
      again();
    } catch (error) {
      showStatus(error.message);
    }
  });

  document.getElementById("open-phone").addEventListener("submit", (event) => {
    event.preventDefault();
    const number = document.getElementById("phone-number").value.trim();
    window.location.href = "/sandbox/ui/phones/" + encodeURIComponent(number);
  });
});
