// JoinerSdk: the members of Microsoft's Calling SDK that the joiner page may use, each typed from the SDK's own
// types/communication-calling.d.ts. The page types the module it loads as JoinerSdk; conformance.ts proves that
// the real bundle and the sandbox's stand-in both have every member with these types. To use more of the SDK, add
// it here first: tsc then fails until the stand-in has it too, and fails at once if the real SDK lacks it.
import type {
  CallAgentOptions,
  CallClientOptions,
  CallEndReason,
  CallInfo,
  CallState,
  ConnectionState,
  ConnectionStateChangedEvent,
  HangUpOptions,
  LocalAudioStream,
  PropertyChangedEvent,
  TeamsMeetingIdLocator,
  TeamsMeetingLinkLocator,
} from "@azure/communication-calling";
import type { CommunicationTokenCredential, CommunicationTokenRefreshOptions } from "@azure/communication-common";

/** A local audio stream made from a MediaStream (the joiner's silent WebAudio source). */
export type JoinerLocalAudioStream = Pick<LocalAudioStream, "mediaStreamType" | "dispose">;

/** JoinCallOptions as the joiner passes them: muted, a silent stream, no video. */
export interface JoinerJoinOptions {
  audioOptions?: { muted?: boolean; localAudioStreams?: JoinerLocalAudioStream[] };
}

export interface JoinerCall {
  readonly id: string;
  readonly state: CallState;
  readonly callEndReason?: CallEndReason;
  /** threadId is known at once for a meetingLink join, parsed from the link. */
  readonly info: Pick<CallInfo, "threadId">;
  readonly isMuted: boolean;
  readonly isIncomingAudioMuted: boolean;
  on(event: "stateChanged", listener: PropertyChangedEvent): void;
  off(event: "stateChanged", listener: PropertyChangedEvent): void;
  hangUp(options?: HangUpOptions): Promise<void>;
  mute(): Promise<void>;
  muteIncomingAudio(): Promise<void>;
}

export interface JoinerCallAgent {
  readonly connectionState: ConnectionState;
  readonly displayName?: string;
  readonly calls: ReadonlyArray<JoinerCall>;
  join(meetingLocator: TeamsMeetingLinkLocator, options?: JoinerJoinOptions): JoinerCall;
  join(meetingLocator: TeamsMeetingIdLocator, options?: JoinerJoinOptions): JoinerCall;
  on(event: "connectionStateChanged", listener: ConnectionStateChangedEvent): void;
  off(event: "connectionStateChanged", listener: ConnectionStateChangedEvent): void;
  dispose(): Promise<void>;
}

export interface JoinerCallClient {
  createCallAgent(tokenCredential: CommunicationTokenCredential, options?: CallAgentOptions): Promise<JoinerCallAgent>;
  dispose(): Promise<void>;
}

export interface JoinerSdk {
  CallClient: new (options?: CallClientOptions) => JoinerCallClient;
  AzureCommunicationTokenCredential: new (
    refreshOptions: CommunicationTokenRefreshOptions,
  ) => CommunicationTokenCredential;
  LocalAudioStream: new (source: MediaStream) => JoinerLocalAudioStream;
}
