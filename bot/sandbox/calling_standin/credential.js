// @ts-check
// The stand-in's AzureCommunicationTokenCredential (as @azure/communication-common 2.5.0 behaves: the expiry read
// from the JWT, a 10-minute "expiring soon" window, proactive refresh at that window or at half the remaining
// lifetime of a shorter token) and the SDK-shaped errors the stand-in throws.

/** @typedef {import("@azure/communication-common").CommunicationTokenCredential} CommunicationTokenCredential */
/**
 * @typedef {import("@azure/communication-common").CommunicationTokenRefreshOptions} CommunicationTokenRefreshOptions
 */
/** @typedef {Awaited<ReturnType<CommunicationTokenCredential["getToken"]>>} AccessToken */

const EXPIRING_SOON_MS = 10 * 60 * 1000;
const REFRESH_AFTER_LIFETIME = 0.5;
/** @type {AccessToken} */
const EXPIRED = { token: "", expiresOnTimestamp: -10 };

/** The Calling SDK's own error messages and codes (those the stand-in can produce). */
export const ERRORS = /** @type {const} */ ({
  BAD_PROTOCOL: [400, 40100, "ACS Web Calling SDK must be used through https, file:, or localhost"],
  ONE_CALL_AGENT_PER_CALL_CLIENT: [
    400,
    40008,
    "CallClient instance can support only one CallAgent or TeamsCallAgent create new CallClient instance to create " +
      "new CallAgent or TeamsCallAgent",
  ],
  CALL_CLIENT_DISPOSED: [404, 40012, "The CallClient has been disposed. Please create a new CallClient instance."],
  CALL_AGENT_DISPOSED: [409, 40203, "Call Agent is already disposed"],
  GET_TOKEN: [401, 44110, "Failed to get AccessToken"],
  PARSE_TOKEN_FAIL: [401, 44117, "Failed to parse AccessToken"],
  INVALID_TOKEN_SCOPE: [401, 44113, "AccessToken does not contain 'voip' or 'voip.join' scope"],
  ACCESSTOKEN_EXPIRED: [401, 40235, "AccessToken expired"],
  DISPLAY_NAME_TOO_LONG: [400, 40215, "Display name is too long."],
  INVALID_JOIN_LOCATOR: [400, 40209, "Invalid join locator specified."],
});

/** Shaped like the SDK's CallingCommunicationError: name, message, code, subCode, resultCategories. */
export class CallingCommunicationError extends Error {
  /**
   * @param {number} code
   * @param {number} subCode
   * @param {string} message
   */
  constructor(code, subCode, message) {
    super(message);
    this.name = "CallingCommunicationError";
    this.code = code;
    this.subCode = subCode;
    this.resultCategories = ["ExpectedError"];
  }
}

/** @param {readonly [number, number, string]} spec */
export function sdkError(spec) {
  return new CallingCommunicationError(spec[0], spec[1], spec[2]);
}

/**
 * The claims of an ACS token, or null if it is not a JWT.
 * @param {string} token
 * @returns {{ exp?: number, acsScope?: string, sub?: string } | null}
 */
export function tokenClaims(token) {
  const payload = token.split(".")[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * @param {string | AccessToken} token
 * @returns {AccessToken}
 */
function parseToken(token) {
  if (typeof token !== "string") return token;
  const exp = tokenClaims(token)?.exp;
  if (typeof exp !== "number") throw new Error("Invalid token: the stand-in reads its expiry from the JWT.");
  return { token, expiresOnTimestamp: exp * 1000 };
}

/** @param {AccessToken} token */
const isValid = (token) => Date.now() < token.expiresOnTimestamp;
/** @param {AccessToken} token */
const isExpiringSoon = (token) => Date.now() >= token.expiresOnTimestamp - EXPIRING_SOON_MS;

/** @implements {CommunicationTokenCredential} */
export class AzureCommunicationTokenCredential {
  /** @param {string | CommunicationTokenRefreshOptions} options */
  constructor(options) {
    /** @type {CommunicationTokenRefreshOptions["tokenRefresher"] | null} */
    this._refresher = typeof options === "string" ? null : options.tokenRefresher;
    const initial = typeof options === "string" ? options : options.token;
    /** @type {AccessToken} */
    this._current = initial ? parseToken(initial) : EXPIRED;
    this._proactive = typeof options !== "string" && options.refreshProactively === true;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._timer = undefined;
    /** @type {Promise<void> | null} */
    this._updating = null;
    this._disposed = false;
    if (this._proactive) this._schedule();
  }

  /** @returns {Promise<AccessToken>} */
  async getToken() {
    if (this._disposed) throw new Error("The credential has been disposed.");
    if (!isExpiringSoon(this._current)) return this._current;
    if (!isValid(this._current)) await this._update();
    return this._current;
  }

  dispose() {
    this._disposed = true;
    this._current = EXPIRED;
    clearTimeout(this._timer);
  }

  _update() {
    if (!this._updating) {
      this._updating = this._refresh().finally(() => {
        this._updating = null;
      });
    }
    return this._updating;
  }

  async _refresh() {
    if (this._disposed || !this._refresher) return;
    const fresh = parseToken(await this._refresher());
    if (!isValid(fresh)) throw new Error("The token returned from the tokenRefresher is expired.");
    this._current = fresh;
    if (this._proactive) this._schedule();
  }

  _schedule() {
    clearTimeout(this._timer);
    const ttl = this._current.expiresOnTimestamp - Date.now();
    const delay = isExpiringSoon(this._current) ? ttl * REFRESH_AFTER_LIFETIME : ttl - EXPIRING_SOON_MS;
    // A refresh that fails is not retried on a timer (nor is it in the real credential): the next getToken after
    // the token expired asks again.
    this._timer = setTimeout(() => this._update().catch(() => {}), Math.max(0, delay));
  }
}
