// @ts-check
/**
 * The call joiner: holds call legs for the bridge, one CallClient and CallAgent per ACS identity, several per page.
 *
 * The bridge (bot/calls/browser) drives this page through Playwright. It calls the functions of `globalThis.joiner`
 * with page.evaluate; the page answers through two bindings the bridge exposes: `bridgeToken(legId)` gives a current
 * voip token (the credential's tokenRefresher: no token is ever in the page's URL, storage or console) and
 * `bridgeReport(legId, report)` tells of every change of a leg. The SDK module is imported from the URL the bridge
 * names: the bundle of @azure/communication-calling or the sandbox's stand-in, which has the same API. Which states
 * and end codes mean what is decided on the bridge's side (bot/calls/states.py), not here.
 */

/** @typedef {import('joiner-sdk').JoinerSdk} Sdk */
/** @typedef {import('joiner-sdk').JoinerCallClient} CallClient */
/** @typedef {import('joiner-sdk').JoinerCallAgent} CallAgent */
/** @typedef {import('joiner-sdk').JoinerCall} Call */
/** @typedef {import('@azure/communication-common').CommunicationTokenCredential} TokenCredential */

/**
 * What the page tells the bridge: a call state other than Disconnected; the call's end with its callEndReason; the
 * agent's connection lost (its leg goes with it); or an error before the call existed.
 * @typedef {{kind: 'state', state: string, threadId?: string}
 *   | {kind: 'ended', code: number, subCode?: number, threadId?: string}
 *   | {kind: 'lost', reason?: string}
 *   | {kind: 'error', message: string, code?: number, subCode?: number}} LegReport
 */

/**
 * @typedef {object} JoinArgs
 * @property {string} displayName
 * @property {string} [meetingLink]
 * @property {string} [meetingId]
 * @property {string} [passcode]
 */

/**
 * @typedef {object} Leg
 * @property {string} id
 * @property {CallClient} client
 * @property {TokenCredential} credential
 * @property {CallAgent | null} agent
 * @property {Call | null} call
 * @property {MediaStreamAudioDestinationNode | null} audio
 * @property {boolean} done
 * @property {boolean} incomingMuted
 * @property {(report: LegReport) => void} settle resolves join() with the first report that is not "joining"
 * @property {Promise<void>} finished settles once the leg is hung up, disposed and reported
 * @property {() => void} markFinished
 */

/**
 * The bindings the bridge exposes to this page (Playwright expose_binding).
 * @typedef {object} Bridge
 * @property {(legId: string, report: LegReport) => Promise<void>} bridgeReport
 * @property {(legId: string) => Promise<string>} bridgeToken
 */

const JOINING = new Set(['None', 'Connecting', 'Ringing', 'EarlyMedia', 'Disconnecting']);
// A hang-up or dispose that does not settle (the service out of reach) must not keep a leg's end from the bridge.
const RELEASE_TIMEOUT_MS = 5000;
const bridge = /** @type {Bridge} */ (/** @type {unknown} */ (globalThis));

/** @type {Sdk | null} */
let sdk = null;
/** @type {Map<string, Leg>} */
const legs = new Map();
/** @type {AudioContext | null} */
let audioContext = null;
/** @type {GainNode | null} */
let silence = null;

/**
 * Import the SDK module; the page can join nothing before this.
 * @param {string} url
 * @returns {Promise<string>} the SDK module's URL, for the bridge's log
 */
async function init(url) {
  const loaded = /** @type {Record<string, unknown>} */ (await import(url));
  const missing = ['CallClient', 'AzureCommunicationTokenCredential', 'LocalAudioStream'].filter(
    (name) => typeof loaded[name] !== 'function',
  );
  if (missing.length) throw new Error(`the SDK module at ${url} lacks ${missing.join(', ')}`);
  sdk = /** @type {Sdk} */ (/** @type {unknown} */ (loaded));
  return url;
}

/**
 * A silent local audio stream: the SDK gets a live track without a (fake) microphone behind it.
 * @returns {MediaStreamAudioDestinationNode}
 */
function silentAudio() {
  if (audioContext === null || silence === null) {
    audioContext = new AudioContext();
    const tone = audioContext.createOscillator();
    silence = audioContext.createGain();
    silence.gain.value = 0;
    tone.connect(silence);
    tone.start();
  }
  const destination = audioContext.createMediaStreamDestination();
  silence.connect(destination);
  return destination;
}

/**
 * @param {unknown} error
 * @returns {LegReport}
 */
function errorReport(error) {
  const e = /** @type {{message?: unknown, code?: unknown, subCode?: unknown}} */ (error ?? {});
  /** @type {LegReport} */
  const report = { kind: 'error', message: String(e.message ?? error) };
  if (typeof e.code === 'number') report.code = e.code;
  if (typeof e.subCode === 'number') report.subCode = e.subCode;
  return report;
}

/**
 * Wait for a promise, but no longer than RELEASE_TIMEOUT_MS; its failure is no error here.
 * @param {Promise<unknown>} promise
 * @returns {Promise<void>}
 */
async function settled(promise) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(resolve, RELEASE_TIMEOUT_MS);
  });
  try {
    await Promise.race([promise.catch(() => {}), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * @param {Leg} leg
 * @param {LegReport} report
 */
function tell(leg, report) {
  leg.settle(report);
  // The bridge may be gone (stopping, or this page being closed): nobody is left to tell.
  bridge.bridgeReport(leg.id, report).catch(() => {});
}

/**
 * End a leg: hang up if the call still stands, dispose its agent (a new agent for the same identity fails while
 * the old one lives: 409/40228), then report, so the bridge never joins again before the old leg is gone.
 * @param {Leg} leg
 * @param {LegReport} report
 */
async function finish(leg, report) {
  if (leg.done) return leg.finished;
  leg.done = true;
  const call = leg.call;
  if (call && call.state !== 'Disconnected') await settled(call.hangUp({ forEveryone: false }));
  try {
    leg.credential.dispose();
  } catch {
    // nothing more to release
  }
  if (leg.agent) await settled(leg.agent.dispose());
  await settled(leg.client.dispose());
  if (leg.audio && silence) silence.disconnect(leg.audio);
  legs.delete(leg.id);
  tell(leg, report);
  leg.markFinished();
  return leg.finished;
}

/** @param {Leg} leg */
function onState(leg) {
  const call = leg.call;
  if (!call || leg.done) return;
  const threadId = call.info?.threadId;
  if (call.state === 'Disconnected') {
    const end = call.callEndReason;
    /** @type {LegReport} */
    const report = { kind: 'ended', code: end ? end.code : 0 };
    if (end && typeof end.subCode === 'number') report.subCode = end.subCode;
    if (threadId) report.threadId = threadId;
    void finish(leg, report);
    return;
  }
  if (JOINING.has(call.state)) return;
  if (call.state === 'Connected' && !leg.incomingMuted) {
    // What others say is never played: nobody listens here.
    leg.incomingMuted = true;
    call.muteIncomingAudio().catch(() => {
      leg.incomingMuted = false;
    });
  }
  /** @type {LegReport} */
  const report = { kind: 'state', state: call.state };
  if (threadId) report.threadId = threadId;
  tell(leg, report);
}

/**
 * Join a Teams meeting as a new leg: muted, no video, incoming audio muted, a silent local stream. Resolves with
 * the first report that is not "joining" (lobby, connected, ended, lost or an error); later ones go to bridgeReport.
 * @param {string} legId
 * @param {JoinArgs} args
 * @returns {Promise<LegReport>}
 */
async function join(legId, args) {
  if (sdk === null) throw new Error('the SDK is not loaded');
  if (legs.has(legId)) throw new Error(`leg ${legId} exists already`);
  /** @type {(report: LegReport) => void} */
  let settle = () => {};
  /** @type {Promise<LegReport>} */
  const first = new Promise((resolve) => {
    settle = resolve;
  });
  /** @type {() => void} */
  let markFinished = () => {};
  /** @type {Promise<void>} */
  const finished = new Promise((resolve) => {
    markFinished = resolve;
  });
  /** @type {Leg} */
  const leg = {
    id: legId,
    client: new sdk.CallClient(),
    credential: new sdk.AzureCommunicationTokenCredential({
      // No initial token: the first one comes through the binding too, like every refresh.
      tokenRefresher: () => bridge.bridgeToken(legId),
      refreshProactively: true,
    }),
    agent: null,
    call: null,
    audio: null,
    done: false,
    incomingMuted: false,
    settle,
    finished,
    markFinished,
  };
  legs.set(legId, leg);
  try {
    leg.agent = await leg.client.createCallAgent(leg.credential, { displayName: args.displayName });
  } catch (error) {
    await finish(leg, errorReport(error));
    return first;
  }
  if (leg.done) return first; // hung up while the agent was being created
  const agent = leg.agent;
  // Offline the SDK resolves createCallAgent with a disconnected agent rather than rejecting.
  if (agent.connectionState === 'Disconnected') {
    await finish(leg, { kind: 'lost', reason: 'connectionIssue' });
    return first;
  }
  agent.on('connectionStateChanged', (change) => {
    if (change.newValue === 'Disconnected') {
      /** @type {LegReport} */
      const report = { kind: 'lost' };
      if (change.reason) report.reason = change.reason;
      void finish(leg, report);
    }
  });
  leg.audio = silentAudio();
  const options = { audioOptions: { muted: true, localAudioStreams: [new sdk.LocalAudioStream(leg.audio.stream)] } };
  try {
    leg.call = args.meetingLink
      ? agent.join({ meetingLink: args.meetingLink }, options)
      : agent.join({ meetingId: args.meetingId ?? '', passcode: args.passcode ?? '' }, options);
  } catch (error) {
    await finish(leg, errorReport(error));
    return first;
  }
  const call = leg.call;
  call.on('stateChanged', () => onState(leg));
  onState(leg);
  return first;
}

/**
 * Hang up a leg (the bridge's own leave: it ends 0/0). Resolves once it is disposed; an unknown leg is no error.
 * @param {string} legId
 * @returns {Promise<void>}
 */
async function hangUp(legId) {
  const leg = legs.get(legId);
  if (!leg) return;
  if (leg.call) await settled(leg.call.hangUp({ forEveryone: false }));
  // The stateChanged to Disconnected normally finishes it; a call that never got that far is finished here.
  await finish(leg, { kind: 'ended', code: 0, subCode: 0 });
}

/**
 * Hang up every leg: the bridge is stopping.
 * @returns {Promise<number>} how many legs were held
 */
async function dispose() {
  const held = [...legs.keys()];
  await Promise.all(held.map(hangUp));
  return held.length;
}

/**
 * The bridge's heartbeat: answers while the page's event loop runs.
 * @returns {number} how many legs the page holds
 */
function ping() {
  return legs.size;
}

// A module to type checkers too (its type names stay its own); the bridge reaches it through globalThis.joiner.
export {};

/** @type {Record<string, unknown>} */ (/** @type {unknown} */ (globalThis)).joiner = {
  init,
  join,
  hangUp,
  dispose,
  ping,
};
