// @ts-check
// The sandbox's stand-in for Microsoft's Calling SDK (@azure/communication-calling 2.0.0): the part of its surface
// that the browser connector's joiner page uses (joiner/sdk-types.ts, checked by tsc), backed by the sandbox's
// call legs over one WebSocket per CallAgent. A leg lives as long as that connection: when the page dies, the
// sandbox drops its legs after a grace period, as Teams drops a vanished client. Contract: README.md here.

import { Call, Listeners } from "./call.js";
import {
  AzureCommunicationTokenCredential,
  CallingCommunicationError,
  ERRORS,
  sdkError,
  tokenClaims,
} from "./credential.js";

export { AzureCommunicationTokenCredential };

/** @typedef {import("@azure/communication-calling").ConnectionState} ConnectionState */
/** @typedef {import("@azure/communication-calling").ConnectionStateChangedEvent} ConnectionStateChangedEvent */
/** @typedef {import("@azure/communication-calling").ConnectionStateChangedReason} ConnectionStateChangedReason */
/** @typedef {import("@azure/communication-calling").CallAgentOptions} CallAgentOptions */
/** @typedef {import("@azure/communication-calling").CallClientOptions} CallClientOptions */
/** @typedef {import("@azure/communication-calling").TeamsMeetingLinkLocator} TeamsMeetingLinkLocator */
/** @typedef {import("@azure/communication-calling").TeamsMeetingIdLocator} TeamsMeetingIdLocator */
/** @typedef {import("@azure/communication-calling").MediaStreamType} MediaStreamType */
/** @typedef {import("@azure/communication-common").CommunicationTokenCredential} CommunicationTokenCredential */
/** @typedef {Awaited<ReturnType<CommunicationTokenCredential["getToken"]>>} AccessToken */
/** @typedef {{ audioOptions?: { muted?: boolean, localAudioStreams?: LocalAudioStream[] } }} JoinOptions */
/** @typedef {import("./call.js").ServerMessage} ServerMessage */

const AGENT_URL = new URL("agent", import.meta.url);
AGENT_URL.protocol = AGENT_URL.protocol === "http:" ? "ws:" : "wss:";
const MAX_DISPLAY_NAME = 256;
// The real SDK resolved createCallAgent offline after about 14 s: this bounds the stand-in's wait the same way.
const CONNECT_TIMEOUT_MS = 15_000;
const TOKEN_CHECK_MIN_MS = 1_000;
const TOKEN_CHECK_MAX_MS = 60_000;
/** @type {readonly [number, number]} */
const NETWORK_LOST = [410, 3112];
/** @type {readonly [number, number]} */
const NETWORK_ERROR = [490, 4525];

/**
 * The meeting chat's thread id named by a long Teams join link (/l/meetup-join/<thread>/...), as the SDK reads it.
 * @param {string} link
 */
function threadIdOf(link) {
  try {
    const match = new URL(link).pathname.match(/^\/l\/meetup-join\/([^/]+)/);
    return match ? decodeURIComponent(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A local audio stream over a MediaStream (the joiner's silent source); the stand-in sends no media. */
export class LocalAudioStream {
  /** @param {MediaStream} source */
  constructor(source) {
    this._source = source;
  }

  /** @returns {MediaStreamType} */
  get mediaStreamType() {
    return "Audio";
  }

  getMediaStream() {
    return Promise.resolve(this._source);
  }

  dispose() {}
}

class CallAgent {
  /**
   * @param {CommunicationTokenCredential} credential
   * @param {string | undefined} displayName
   */
  constructor(credential, displayName) {
    this._credential = credential;
    this.displayName = displayName;
    /** @type {ConnectionState} */
    this._connectionState = "Disconnected";
    /** @type {Map<string, Call>} */
    this._calls = new Map();
    /** @type {Listeners<ConnectionStateChangedEvent>} */
    this._listeners = new Listeners();
    /** @type {WebSocket | null} */
    this._ws = null;
    /** @type {AccessToken | null} */
    this._token = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._tokenTimer = undefined;
    /** @type {ConnectionStateChangedReason} */
    this._closeReason = "connectionIssue";
    this._disposed = false;
  }

  get connectionState() {
    return this._connectionState;
  }

  get calls() {
    return [...this._calls.values()];
  }

  /** @param {"connectionStateChanged"} event @param {ConnectionStateChangedEvent} listener */
  on(event, listener) {
    this._listeners.on(event, listener);
  }

  /** @param {"connectionStateChanged"} event @param {ConnectionStateChangedEvent} listener */
  off(event, listener) {
    this._listeners.off(event, listener);
  }

  /**
   * Returns the Call at once (state None, then Connecting); the sandbox's answers move it on.
   * @param {TeamsMeetingLinkLocator | TeamsMeetingIdLocator} locator
   * @param {JoinOptions} [options]
   */
  join(locator, options) {
    if (this._disposed) throw sdkError(ERRORS.CALL_AGENT_DISPOSED);
    const link = "meetingLink" in locator ? locator.meetingLink : undefined;
    const meetingId = "meetingId" in locator ? locator.meetingId : undefined;
    if (!(typeof link === "string" && link) && !(typeof meetingId === "string" && meetingId)) {
      throw sdkError(ERRORS.INVALID_JOIN_LOCATOR);
    }
    const call = new Call(this, link ? threadIdOf(link) : undefined, options?.audioOptions?.muted === true);
    this._calls.set(call.id, call);
    queueMicrotask(() => {
      call._setState("Connecting");
      const passcode = "passcode" in locator ? locator.passcode : undefined;
      const where = link ? { meetingLink: link } : { meetingId, passcode };
      if (!this._send({ type: "join", callId: call.id, muted: call.isMuted, ...where })) call._end(...NETWORK_ERROR);
    });
    return call;
  }

  /** Hangs up every call, then closes the connection (no grace period: the page said goodbye). */
  async dispose() {
    if (this._disposed) return;
    await Promise.all(this.calls.map((call) => call.hangUp()));
    this._disposed = true;
    clearTimeout(this._tokenTimer);
    this._send({ type: "bye" });
    this._ws?.close(1000);
    this._setConnectionState("Disconnected", undefined);
  }

  /**
   * Sends on the live connection; false if there is none.
   * @param {object} message
   */
  _send(message) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    this._ws.send(JSON.stringify(message));
    return true;
  }

  /**
   * @param {ConnectionState} state
   * @param {ConnectionStateChangedReason | undefined} reason
   */
  _setConnectionState(state, reason) {
    const oldValue = this._connectionState;
    if (oldValue === state) return;
    this._connectionState = state;
    this._listeners.emit("connectionStateChanged", { oldValue, newValue: state, ...(reason ? { reason } : {}) });
  }

  /**
   * Opens the connection and says hello with the token (never in the URL). Refused: rejects with the SDK's
   * error. The sandbox unreachable: resolves Disconnected, as the real SDK does offline.
   * @returns {Promise<void>}
   */
  _connect(/** @type {AccessToken} */ token) {
    this._token = token;
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(AGENT_URL);
      this._ws = ws;
      /** @param {() => void} settle */
      const once = (settle) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        settle();
      };
      const timer = setTimeout(() => once(() => (ws.close(), resolve())), CONNECT_TIMEOUT_MS);
      ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token: token.token, displayName: this.displayName }));
      ws.onmessage = (event) => {
        /** @type {ServerMessage} */
        const message = JSON.parse(String(event.data));
        if (message.type === "ready") {
          once(() => {
            this._connectionState = "Connected";
            this._scheduleTokenCheck();
            resolve();
          });
        } else if (message.type === "refused") {
          once(() => {
            this._disposed = true;
            reject(new CallingCommunicationError(message.code ?? 500, message.subCode ?? 0, message.message ?? ""));
          });
        } else {
          this._onMessage(message);
        }
      };
      ws.onclose = () => {
        if (!settled) once(resolve);
        else this._onClose();
      };
    });
  }

  /** @param {ServerMessage} message */
  _onMessage(message) {
    if (message.type === "call" && message.callId) {
      this._calls.get(message.callId)?._update(message);
    } else if (message.type === "disconnected" && message.reason === "invalidToken") {
      this._closeReason = "invalidToken";
    } else if (message.type === "error") {
      console.warn("stand-in Calling SDK:", message.reason);
    }
  }

  /** The connection is gone: its calls end as a network loss does, and the agent is Disconnected. */
  _onClose() {
    clearTimeout(this._tokenTimer);
    if (this._disposed) return;
    for (const call of this.calls) {
      call._end(...(call.state === "Connected" ? NETWORK_LOST : NETWORK_ERROR));
    }
    this._setConnectionState("Disconnected", this._closeReason);
  }

  /** Asks the credential for its token as expiry nears and sends a fresh one on the live connection. */
  _scheduleTokenCheck() {
    const left = (this._token?.expiresOnTimestamp ?? 0) - Date.now();
    const delay = Math.min(Math.max(left / 4, TOKEN_CHECK_MIN_MS), TOKEN_CHECK_MAX_MS);
    this._tokenTimer = setTimeout(() => this._checkToken(), delay);
  }

  async _checkToken() {
    if (this._disposed || this._connectionState !== "Connected") return;
    try {
      const token = await this._credential.getToken();
      if (token.token !== this._token?.token) {
        this._token = token;
        this._send({ type: "token", token: token.token });
      }
    } catch {
      // The refresher failed; ask again later. The sandbox ends the calls if the token runs out meanwhile.
    }
    if (this._connectionState === "Connected") this._scheduleTokenCheck();
  }
}

export class CallClient {
  /** @param {CallClientOptions} [options] Logging and network options: the stand-in has no use for them. */
  constructor(options) {
    void options;
    if (location.protocol !== "https:" && location.protocol !== "file:" && location.hostname !== "localhost") {
      throw sdkError(ERRORS.BAD_PROTOCOL);
    }
    /** @type {CallAgent | null} */
    this._agent = null;
    this._disposed = false;
  }

  /**
   * One active CallAgent per CallClient; one CallAgent per identity anywhere (409/40228 from the sandbox).
   * @param {CommunicationTokenCredential} tokenCredential
   * @param {CallAgentOptions} [options]
   * @returns {Promise<CallAgent>}
   */
  async createCallAgent(tokenCredential, options) {
    if (this._disposed) throw sdkError(ERRORS.CALL_CLIENT_DISPOSED);
    if (this._agent && !this._agent._disposed) throw sdkError(ERRORS.ONE_CALL_AGENT_PER_CALL_CLIENT);
    const displayName = options?.displayName;
    if (displayName !== undefined && displayName.length > MAX_DISPLAY_NAME) {
      throw sdkError(ERRORS.DISPLAY_NAME_TOO_LONG);
    }
    const agent = new CallAgent(tokenCredential, displayName);
    this._agent = agent;
    try {
      /** @type {AccessToken} */
      let token;
      try {
        token = await tokenCredential.getToken();
      } catch {
        throw sdkError(ERRORS.GET_TOKEN);
      }
      const claims = tokenClaims(token.token);
      if (!claims) throw sdkError(ERRORS.PARSE_TOKEN_FAIL);
      const scopes = String(claims.acsScope ?? "").split(",");
      if (!scopes.includes("voip") && !scopes.includes("voip.join")) throw sdkError(ERRORS.INVALID_TOKEN_SCOPE);
      if (token.expiresOnTimestamp <= Date.now()) throw sdkError(ERRORS.ACCESSTOKEN_EXPIRED);
      await agent._connect(token);
    } catch (error) {
      this._agent = null;
      throw error;
    }
    return agent;
  }

  async dispose() {
    await this._agent?.dispose();
    this._disposed = true;
  }
}
