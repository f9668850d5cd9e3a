// The Calling SDK test page's driver (tests/support/calling_page.py): loads the SDK module named in ?sdk= and
// exposes window.harness to the test.
// Fresh tokens come from the test through window.freshToken(key) (a Playwright binding), as the bridge's do.

const sdkUrl = new URLSearchParams(location.search).get("sdk");
const agents = {};
const calls = {};
const log = [];

function errorOf(e) {
  const message = String(e?.message ?? e);
  return { ok: false, name: e?.name ?? null, code: e?.code ?? null, subCode: e?.subCode ?? null, message };
}

try {
  const sdk = await import(sdkUrl);
  window.harness = {
    log,
    newClient() {
      try {
        new sdk.CallClient();
        return { ok: true };
      } catch (e) {
        return errorOf(e);
      }
    },
    async createAgent(key, token, displayName, clientKey) {
      const credential = new sdk.AzureCommunicationTokenCredential({
        token,
        refreshProactively: true,
        tokenRefresher: async () => await window.freshToken(key),
      });
      let client = clientKey ? agents[clientKey].client : new sdk.CallClient();
      try {
        const agent = await client.createCallAgent(credential, { displayName });
        agents[key] = { client, agent };
        agent.on("connectionStateChanged", (e) =>
          log.push({ agent: key, newValue: e.newValue, reason: e.reason ?? null }),
        );
        return { ok: true, connectionState: agent.connectionState };
      } catch (e) {
        agents[key] = { client, agent: null };
        return errorOf(e);
      }
    },
    sameClientAgain(key, token) {
      return this.createAgent(key + "-again", token, "again", key);
    },
    join(key, locator) {
      const call = agents[key].agent.join(locator, { audioOptions: { muted: true } });
      calls[call.id] = call;
      log.push({ callId: call.id, state: call.state });
      call.on("stateChanged", () => log.push({ callId: call.id, state: call.state, end: call.callEndReason ?? null }));
      return { id: call.id, state: call.state, threadId: call.info.threadId ?? null };
    },
    badJoin(key) {
      try {
        agents[key].agent.join({});
        return { ok: true };
      } catch (e) {
        return errorOf(e);
      }
    },
    call(id) {
      const c = calls[id];
      const end = c.callEndReason ?? null;
      const threadId = c.info.threadId ?? null;
      return { state: c.state, end, threadId, muted: c.isMuted, incomingMuted: c.isIncomingAudioMuted };
    },
    connectionState(key) {
      return agents[key].agent.connectionState;
    },
    async hangUp(id) {
      await calls[id].hangUp();
      return this.call(id);
    },
    async muteIncoming(id) {
      await calls[id].muteIncomingAudio();
      return this.call(id);
    },
    async dispose(key) {
      await agents[key].agent.dispose();
      return agents[key].agent.connectionState;
    },
  };
} catch (e) {
  window.harnessError = String(e?.stack ?? e);
}
