// @ts-check
// The part of Microsoft's Calling SDK that the joiner page loads, bundled by esbuild into one browser ES module
// (make joiner). What the page may use of it is JoinerSdk in sdk-types.ts; conformance.ts checks both sides.
export { CallClient, LocalAudioStream } from "@azure/communication-calling";
export { AzureCommunicationTokenCredential } from "@azure/communication-common";
export { AzureLogger, setLogLevel } from "@azure/logger";
