// One meeting: its people (end a session, block a user), pause or resume it, and the relayed conversation.
"use strict";

(() => {
  const { el, cell, timeEl, stateBadge, api, reasonOf, say, live } = Bridge;
  const meetingId = document.querySelector('meta[name="meeting-id"]').content;
  const result = document.getElementById("action-result");
  const pause = document.getElementById("pause");
  let current = null;

  async function act(question, method, path, body, done) {
    if (!window.confirm(question)) return;
    const answer = await api(method, path, body);
    say(result, answer.ok ? done : `Refused: ${reasonOf(answer)}`, answer.ok);
  }

  function personRow(s) {
    const end = el("button", {
      type: "button", class: "danger-quiet", "data-action": "end",
      onclick: () => act(`End ${s.displayName}'s session? They are told an operator took them out.`,
        "DELETE", `/sessions/${s.id}`, undefined, `Ended ${s.displayName}'s session.`),
    }, "End session");
    const block = el("button", {
      type: "button", class: "danger", "data-action": "block",
      onclick: () => act(`Block ${s.displayName} (${s.userId})? Their sessions end and they cannot join again.`,
        "POST", `/users/${encodeURIComponent(s.userId)}/block`, undefined, `Blocked ${s.displayName}.`),
    }, "Block user");
    return el("tr", { "data-session": s.id, "data-user": s.userId },
      cell("User", el("div", {}, el("span", { class: "who" }, s.displayName), el("span", { class: "sub" }, s.userId))),
      cell("State", stateBadge(s.state, s.condition)),
      cell("Since", timeEl(s.since)),
      cell("Actions", el("span", { class: "actions" }, end, block)));
  }

  const KINDS = { message: "", notice: "notice", edit: "edit", delete: "deleted" };

  function deliveryStatus(d) {
    const parts = [el("span", { class: `badge delivery-${d.state}` }, d.state)];
    if (d.attempts > 1) parts.push(el("span", { class: "sub" }, `${d.attempts} attempts`));
    if (d.reason) parts.push(el("span", { class: "reason" }, d.reason));
    if (d.report) parts.push(el("span", { class: "sub" }, `carrier: ${d.report}`));
    return el("div", { class: "status" }, parts);
  }

  function messageItem(d) {
    const kind = KINDS[d.kind] === undefined ? d.kind : KINDS[d.kind];
    return el("li", { class: `msg dir-${d.direction} kind-${d.kind}`, "data-delivery": d.id, "data-state": d.state },
      el("div", { class: "head" },
        el("span", { class: "route" }, el("strong", {}, d.from), " → ", d.to),
        kind ? el("span", { class: "badge kind" }, kind) : null,
        timeEl(d.at)),
      el("p", { class: "text" }, d.text || "–"),
      deliveryStatus(d));
  }

  function render(snap) {
    const m = snap.meeting;
    current = m;
    document.getElementById("gone").hidden = m !== null;
    pause.hidden = m === null;
    if (m) {
      document.title = `${m.name} · Meeting bridge console`;
      document.getElementById("meeting-name").textContent = m.name;
      document.getElementById("meeting-code").textContent = m.code;
      const status = document.getElementById("meeting-status");
      status.textContent = m.paused ? "paused" : "open";
      status.className = `badge ${m.paused ? "paused" : "open"}`;
      document.getElementById("meeting-live").textContent = `${m.liveSessions} live`;
      pause.textContent = m.paused ? "Resume" : "Pause";
    }
    const people = snap.sessions.filter((s) => s.meetingId === meetingId);
    document.querySelector("#people tbody").replaceChildren(...people.map(personRow));
    document.getElementById("people").hidden = people.length === 0;
    document.getElementById("no-people").hidden = people.length > 0;
    const list = document.getElementById("conversation");
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    list.replaceChildren(...snap.conversation.map(messageItem));
    document.getElementById("no-messages").hidden = snap.conversation.length > 0;
    if (atBottom && snap.conversation.length) window.scrollTo(0, document.body.scrollHeight);
  }

  pause.addEventListener("click", () => {
    if (!current) return;
    const paused = !current.paused;
    const question = paused
      ? `Pause ${current.name}? Until it is resumed, nobody can join it and what users send is refused.`
      : `Resume ${current.name}? Users can join and write again.`;
    act(question, "PATCH", `/meetings/${encodeURIComponent(current.id)}`, { paused },
      paused ? "Paused." : "Resumed.");
  });

  live(`?meeting=${encodeURIComponent(meetingId)}`, render);
})();
