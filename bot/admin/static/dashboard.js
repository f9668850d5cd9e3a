// The dashboard: meetings and live sessions from the event stream, and the form that adds a meeting.
"use strict";

(() => {
  const { el, cell, timeEl, stateBadge, api, reasonOf, say, live } = Bridge;
  const meetingHref = (id) => `/console/meetings/${encodeURIComponent(id)}`;

  function meetingRow(m) {
    return el("tr", { "data-meeting": m.id },
      cell("Name", el("a", { href: meetingHref(m.id) }, m.name)),
      cell("Code", el("code", {}, m.code)),
      cell("Status", el("span", { class: `badge ${m.paused ? "paused" : "open"}` }, m.paused ? "paused" : "open")),
      cell("Live sessions", String(m.liveSessions)));
  }

  function sessionRow(s) {
    return el("tr", { "data-session": s.id },
      cell("User", el("div", {}, el("span", { class: "who" }, s.displayName), el("span", { class: "sub" }, s.userId))),
      cell("Meeting", el("a", { href: meetingHref(s.meetingId) }, s.meetingName)),
      cell("State", stateBadge(s.state, s.condition)),
      cell("Since", timeEl(s.since)));
  }

  function render(snap) {
    document.querySelector("#meetings tbody").replaceChildren(...snap.meetings.map(meetingRow));
    document.getElementById("no-meetings").hidden = snap.meetings.length > 0;
    document.getElementById("meetings").hidden = snap.meetings.length === 0;
    document.querySelector("#sessions tbody").replaceChildren(...snap.sessions.map(sessionRow));
    document.getElementById("no-sessions").hidden = snap.sessions.length > 0;
    document.getElementById("sessions").hidden = snap.sessions.length === 0;
  }

  const form = document.getElementById("add-meeting");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = document.getElementById("add-result");
    const body = { link: form.link.value.trim() };
    if (form.code.value.trim()) body.code = form.code.value.trim();
    if (form.name.value.trim()) body.name = form.name.value.trim();
    const button = form.querySelector("button");
    button.disabled = true;
    say(result, "Looking the meeting up…", true);
    const answer = await api("POST", "/meetings", body);
    button.disabled = false;
    if (answer.ok) {
      say(result, `Added “${answer.data.name}” with code ${answer.data.code}.`, true);
      form.reset();
    } else {
      say(result, `Not added: ${reasonOf(answer)}`, false);
    }
  });

  live("", render);
})();
