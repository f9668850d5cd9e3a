// Compile-time proof that the real SDK bundle and the sandbox's stand-in both have every JoinerSdk member with its
// type (tsc fails if not).
// Nothing here runs: it is checked by make joiner-check and never bundled.
import type { JoinerSdk } from "./sdk-types";

type Conforms<T extends JoinerSdk> = T;

/** Microsoft's SDK, as sdk-entry.js re-exports it for the bundle. */
export type RealSdk = Conforms<typeof import("./sdk-entry.js")>;

/** The sandbox's stand-in, which the same page loads offline. */
export type StandinSdk = Conforms<typeof import("../bot/sandbox/calling_standin/standin.js")>;
