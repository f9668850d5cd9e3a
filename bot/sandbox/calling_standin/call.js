// @ts-check
// The stand-in's Call (what CallAgent.join returns) and the small event emitter the stand-in's objects share.

/** @typedef {import("@azure/communication-calling").CallState} CallState */
/** @typedef {import("@azure/communication-calling").CallEndReason} CallEndReason */
/** @typedef {import("@azure/communication-calling").PropertyChangedEvent} PropertyChangedEvent */
/** @typedef {import("@azure/communication-calling").HangUpOptions} HangUpOptions */
/**
 * What the sandbox sends on an agent's connection (README.md).
 * @typedef {{ type: string, callId?: string, state?: string, threadId?: string | null,
 *   callEndReason?: { code: number, subCode: number }, code?: number, subCode?: number, message?: string,
 *   reason?: string }} ServerMessage
 */
/**
 * The agent a call belongs to: it sends on the connection and keeps the calls not yet ended.
 * @typedef {{ _send(message: object): boolean, _calls: Map<string, Call> }} CallOwner
 */

const HANG_UP_TIMEOUT_MS = 10_000;

/** @template {(...args: any[]) => void} L */
export class Listeners {
  constructor() {
    /** @type {Map<string, Set<L>>} */
    this._byEvent = new Map();
  }

  /** @param {string} event @param {L} listener */
  on(event, listener) {
    let set = this._byEvent.get(event);
    if (!set) this._byEvent.set(event, (set = new Set()));
    set.add(listener);
  }

  /** @param {string} event @param {L} listener */
  off(event, listener) {
    this._byEvent.get(event)?.delete(listener);
  }

  /** @param {string} event @param {Parameters<L>} args */
  emit(event, ...args) {
    for (const listener of [...(this._byEvent.get(event) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        console.error("stand-in Calling SDK: a listener threw", error);
      }
    }
  }
}

export class Call {
  /**
   * @param {CallOwner} agent
   * @param {string | undefined} threadId
   * @param {boolean} muted
   */
  constructor(agent, threadId, muted) {
    this._agent = agent;
    /** The sandbox uses the client's call id as the leg's id (its participant id in the roster). */
    this.id = crypto.randomUUID();
    /** @type {{ threadId: string | undefined }} */
    this.info = { threadId };
    /** @type {CallState} */
    this._state = "None";
    /** @type {CallEndReason | undefined} */
    this._endReason = undefined;
    this._muted = muted;
    this._incomingMuted = false;
    /** @type {Listeners<PropertyChangedEvent>} */
    this._listeners = new Listeners();
    /** @type {Array<() => void>} */
    this._ended = [];
  }

  get state() {
    return this._state;
  }

  get callEndReason() {
    return this._endReason;
  }

  get isMuted() {
    return this._muted;
  }

  get isIncomingAudioMuted() {
    return this._incomingMuted;
  }

  /** @param {"stateChanged"} event @param {PropertyChangedEvent} listener */
  on(event, listener) {
    this._listeners.on(event, listener);
  }

  /** @param {"stateChanged"} event @param {PropertyChangedEvent} listener */
  off(event, listener) {
    this._listeners.off(event, listener);
  }

  /** @param {HangUpOptions} [options] Ending the meeting for everyone is not the joiner's to do; it is ignored. */
  async hangUp(options) {
    void options;
    if (this._state === "Disconnected") return;
    const ended = new Promise((resolve) => this._ended.push(() => resolve(undefined)));
    if (!this._agent._send({ type: "hangUp", callId: this.id })) {
      this._end(0, 0);
      return;
    }
    this._setState("Disconnecting");
    const timer = setTimeout(() => this._end(0, 0), HANG_UP_TIMEOUT_MS);
    await ended;
    clearTimeout(timer);
  }

  async mute() {
    this._muted = true;
    this._agent._send({ type: "audio", callId: this.id, muted: true });
  }

  async muteIncomingAudio() {
    this._incomingMuted = true;
    this._agent._send({ type: "audio", callId: this.id, incomingAudioMuted: true });
  }

  /** @param {ServerMessage} message A change of this call's leg. */
  _update(message) {
    if (message.threadId && !this.info.threadId) this.info.threadId = message.threadId;
    if (message.state === "lobby" || message.state === "connected") {
      // A hang-up under way is not undone by a late "connected".
      if (this._state !== "Disconnecting") this._setState(message.state === "lobby" ? "InLobby" : "Connected");
      return;
    }
    const reason = message.callEndReason ?? { code: 0, subCode: 0 };
    this._end(reason.code, reason.subCode);
  }

  /** @param {CallState} state */
  _setState(state) {
    if (this._state === state || this._state === "Disconnected") return;
    this._state = state;
    this._listeners.emit("stateChanged");
  }

  /**
   * Disconnecting comes only from a hang-up under way: the real SDK goes from Connecting (or a later state)
   * straight to Disconnected when the call fails (seen offline: None, Connecting, Disconnected 490/4525).
   * @param {number} code @param {number} subCode
   */
  _end(code, subCode) {
    if (this._state === "Disconnected") return;
    this._endReason = { code, subCode };
    this._setState("Disconnected");
    this._agent._calls.delete(this.id);
    for (const resolve of this._ended.splice(0)) resolve();
  }
}
