"""Typed settings: a TOML file plus BRIDGE__SECTION__KEY environment overrides, validated once at start."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import graph_ids
from .errors import ConfigError
from .formatting import validate_template
from .links import JoinLinkError, parse_join_link
from .models import DEPRECATED_SHARED, IdentityMode
from .phones import check_pattern
from .store_url import StoreUrl, StoreUrlError, parse_store_url

ENV_PREFIX = "BRIDGE__"
REPLY_KEYS = frozenset(
    {
        "help",
        "stop",
        "start",
        "join_usage",
        "unknown_meeting",
        "not_allowed",
        "no_session",
        "name_set",
        "name_invalid",
        "budget",
        "status",
        "status_none",
    }
)
# Whole values people leave in templates; real keys are random and never look like these.
_PLACEHOLDER = re.compile(
    r"^(whsec_)?(<.*>|x{3,}|\.{3}|todo|tbd|secret|password|(change|replace)[_-]?(me|this|it)\w*|your[_-][\w-]+)$",
    re.IGNORECASE,
)


class _Section(BaseModel):
    # A validation error never echoes the value it refused: it may be a secret (a URL with its password, a key).
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def resolve_secret(value: str, environ: Mapping[str, str] | None = None) -> str:
    """`env:NAME` reads an environment variable and `file:PATH` a file, so secrets stay out of config files."""
    env = os.environ if environ is None else environ
    if value.startswith("env:"):
        name = value[4:]
        if name not in env:
            raise ValueError(f"environment variable {name} is not set")
        return env[name]
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {value[5:]}: {exc.strerror}") from exc
    return value


def is_placeholder(value: str) -> bool:
    """The whole value, or any value inside a key=value;... string, is a template's stand-in."""
    candidates = [value, *(part.partition("=")[2] for part in value.split(";") if "=" in part)]
    return any(_PLACEHOLDER.match(c.strip()) for c in candidates)


def _secret(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        context = info.context if isinstance(info.context, dict) else {}
        value = resolve_secret(value, context.get("environ"))
        if is_placeholder(value):
            raise ValueError("is still a placeholder; set a real secret")
    return value


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class BridgeSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None
    """The URL the outside world reaches the bridge at, when it sits behind a proxy."""
    state_dir: Path = Path(".bridge")
    store_url: StoreUrl | None = None
    """sqlite:///path or postgresql://user:password@host:port/db; default sqlite:///<state_dir>/bridge.db. The
    password (or the whole URL) may be env:NAME or file:PATH."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_s: float = Field(10.0, ge=0, le=300)
    """On SIGTERM or SIGINT: how long requests and sends under way get to finish before the rest is cut short."""

    @field_validator("store_url", mode="before")
    @classmethod
    def _store_url(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        context = info.context if isinstance(info.context, dict) else {}
        environ = context.get("environ")
        try:
            return parse_store_url(resolve_secret(value, environ), lambda v: resolve_secret(v, environ))
        except StoreUrlError as exc:
            raise ValueError(str(exc)) from None


AcsCredential = Literal["default", "client_secret"]


def endpoint_of(connection_string: str) -> str | None:
    """The endpoint=... part of a connection string."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            return value.strip() or None
    return None


class HttpSection(_Section):
    """The bridge's HTTP server: how long each stage of a request may take, and how many connections one address
    may hold. A client too slow for them gets 408 (or, idle, a closed connection) and costs no more than its
    socket meanwhile."""

    head_timeout_s: float = Field(10.0, gt=0, le=300)
    """From a request's first byte to the end of its head (request line and headers)."""
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    """From the end of the head to the end of the body (every door's bodies are at most 1 MiB)."""
    idle_timeout_s: float = Field(75.0, gt=0, le=3600)
    """How long a connection may stay open with no request under way: a new one before its first byte, and one
    kept alive between requests. Longer than a load balancer's own idle timeout (60 s for AWS's), so the balancer
    is the one that closes and never sends on a connection the bridge is closing."""
    max_connections_per_peer: int = Field(256, ge=0, le=1_000_000)
    """Connections one address (an IPv6 /64) may hold open at once; a further one is answered 503 and closed.
    0: no cap. Keep it well below the process's open-file limit (ulimit -n), so one address cannot take them all.
    Behind a reverse proxy every connection comes from the proxy: raise it to the proxy's pool, or 0."""


class AcsSection(_Section):
    connection_string: SecretStr | None = None
    """endpoint=...;accesskey=...: requests are signed with the resource's access key (HMAC)."""
    given_endpoint: str | None = Field(None, alias="endpoint")
    """`endpoint` in the file: the resource's endpoint, for the Entra ID sign-in (with `credential` or a client
    secret); with a connection string it may be left out. Read it as `endpoint`, which falls back to the
    connection string's."""
    credential: AcsCredential | None = None
    """default: azure-identity's DefaultAzureCredential (managed identity, workload identity, AZURE_* environment,
    Azure CLI); client_secret: an app registration's tenant_id, client_id and client_secret below."""
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authority: str | None = None
    """The Entra authority host for the client secret; default https://login.microsoftonline.com."""
    ca_file: str | None = None
    """A CA bundle to trust, for the sandbox or a TLS-inspecting proxy."""
    token_minutes: int = Field(1440, ge=60, le=1440)

    _resolve = field_validator("connection_string", "client_secret", mode="before")(_secret)

    @field_validator("connection_string")
    @classmethod
    def _shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            text = value.get_secret_value()
            if "endpoint=" not in text.lower() or "accesskey=" not in text.lower():
                raise ValueError("must read endpoint=https://...;accesskey=...")
        return value

    @field_validator("given_endpoint", "authority")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^\s/]+", value):
            raise ValueError("must be an https:// URL")
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> AcsSection:
        """Exactly one way to sign in: the access key of a connection string, or Entra ID with the endpoint."""
        triple = {"tenant_id": self.tenant_id, "client_id": self.client_id, "client_secret": self.client_secret}
        given = [name for name, value in triple.items() if value is not None]
        if self.connection_string is not None:
            own = endpoint_of(self.connection_string.get_secret_value())
            for name in ("credential", *given):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name}: not used with connection_string (its access key signs in); give one of the two"
                    )
            url = self.given_endpoint
            if url is not None and own is not None and url.rstrip("/") != own.rstrip("/"):
                raise ValueError("endpoint: differs from the connection string's endpoint; give one of them")
            return self
        if self.credential == "default" and given:
            raise ValueError(f'{given[0]}: not used with credential = "default" (it reads AZURE_* variables itself)')
        if given or self.credential == "client_secret":
            missing = [name for name in triple if name not in given]
            if missing:
                raise ValueError(
                    f"{missing[0]}: needed for the client secret sign-in (tenant_id, client_id, client_secret)"
                )
            self.credential = "client_secret"
        if self.credential is not None and self.given_endpoint is None:
            raise ValueError("endpoint: needed with credential (https://<resource>.communication.azure.com/)")
        if self.given_endpoint is not None and self.credential is None:
            raise ValueError(
                'credential: needed with endpoint: "default" (managed identity and the like) or a client secret '
                "(tenant_id, client_id, client_secret); or give connection_string instead"
            )
        return self

    @property
    def endpoint(self) -> str | None:
        """The resource's endpoint: the connection string's, or the one given for the Entra ID sign-in."""
        if self.connection_string is not None:
            return endpoint_of(self.connection_string.get_secret_value()) or self.given_endpoint
        return self.given_endpoint

    @property
    def configured(self) -> bool:
        """An ACS resource is configured: by connection string, or by endpoint and Entra ID."""
        return self.endpoint is not None

    @property
    def sign_in(self) -> str:
        """How the bridge signs in, in words for operators."""
        if self.connection_string is not None:
            return "the access key"
        if self.credential == "default":
            return "Entra ID (DefaultAzureCredential)"
        return "Entra ID (client secret)" if self.credential == "client_secret" else "nothing"


class GraphSection(_Section):
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authority: str | None = None
    base_url: str | None = None
    ca_file: str | None = None

    _resolve = field_validator("client_secret", mode="before")(_secret)

    @property
    def configured(self) -> bool:
        return bool(self.tenant_id and self.client_id and self.client_secret)


class BrowserSection(_Section):
    """The browser connector: Microsoft's Calling SDK in one headless Chromium per bridge process."""

    chromium: str = "/usr/bin/chromium"
    """The Chromium to run (Debian's package); Playwright drives it, no browser is downloaded."""
    sdk: str = "auto"
    """Which Calling SDK the joiner page loads: real (the bundled @azure/communication-calling, `make joiner`),
    an http(s) URL of an ES module with its API, or auto: the sandbox's stand-in on the sandbox, else real."""
    legs_per_page: int = Field(10, ge=1, le=100)
    """Call legs (one CallClient and CallAgent each) one page holds; a page is closed once it holds none."""
    max_legs: int = Field(100, ge=1, le=10_000)
    """Call legs one bridge process holds at most; a join beyond it fails and its user is told why."""
    join_timeout_s: float = Field(90.0, gt=0, le=600)
    """How long a join may take to reach the lobby or the call (the SDK gives group call set-up 85 s)."""
    page_timeout_s: float = Field(30.0, gt=0, le=300)
    """How long a new page may take to load and import the SDK."""
    heartbeat_s: float = Field(2.0, gt=0, le=60)
    """How often every page is asked whether it still answers; a hung page is given up within this plus the
    heartbeat timeout."""
    heartbeat_timeout_s: float = Field(5.0, gt=0, le=120)
    args: list[str] = Field(default_factory=list)
    """More Chromium switches, after the bridge's own (a proxy, or --host-resolver-rules to keep it on loopback)."""
    user_agent: str | None = None
    """A user agent for the pages; none: Chromium's own ("HeadlessChrome", which the SDK calls unsupported but
    which worked in every trial)."""

    @field_validator("sdk")
    @classmethod
    def _sdk(cls, value: str) -> str:
        if value not in ("auto", "real") and not re.match(r"^https?://[^\s/]+/\S*$", value):
            raise ValueError("must be auto, real or an http(s) URL of the SDK module")
        return value


class CallsSection(_Section):
    connector: Literal["auto", "sandbox", "client_reported", "browser"] = "auto"
    """auto: the sandbox's call API when the bridge runs on the sandbox, else client-reported; browser: the
    Calling SDK in headless Chromium (the only way into a real Teams meeting call; calls.browser)."""
    sandbox_endpoint: str | None = None
    """Where the sandbox's call API lives when it is not the ACS endpoint."""
    browser: BrowserSection = Field(default_factory=BrowserSection)


class EventsSection(_Section):
    secret: SecretStr | None = None
    """Turns on POST /channels/acs/events for Event Grid chat events; the subscription's URL carries it as
    ?code=<secret>. Events only hint that a thread changed: polling stays the source of truth."""
    subscribe_sandbox: bool = True
    """On the embedded sandbox, subscribe it to the bridge's events door (a secret is generated if none is set)."""

    _resolve = field_validator("secret", mode="before")(_secret)


class SmsSection(_Section):
    gateway: Literal["none", "acs", "twilio"] = "none"
    """Which gateway carries SMS; on the embedded sandbox `acs` is chosen when this is none."""
    number: str | None = None
    """The bridge's own number (E.164), texts are sent from it; on the sandbox its smsNumber."""
    events_secret: SecretStr | None = None
    """ACS: the secret in the Event Grid subscription's URL for POST /channels/acs-sms/events?code=<secret>."""
    segment_cap: int = Field(3, ge=1, le=10)
    """Segments one outbound text may use; a meeting may set its own."""
    cap_policy: Literal["truncate", "split"] = "truncate"
    """Over the cap: cut the text with a marker, or send it as several texts of at most the cap each."""
    burst_window_s: float = Field(2.0, ge=0, le=60)
    """Meeting messages arriving within this window are combined into one text."""
    budget_segments_per_hour: int = Field(60, ge=1)
    """Per number; reaching it tells the user once and holds the rest until the hour has room."""
    allow: list[str] = Field(default_factory=lambda: ["*"])
    """Numbers or prefixes (+1555*) that may use the bridge."""
    deny: list[str] = Field(default_factory=list)

    @field_validator("allow", "deny")
    @classmethod
    def _number_patterns(cls, value: list[str]) -> list[str]:
        # An entry that can never match a number (e.g. "sms:+1555*" or "555*") would silently let nobody in.
        for pattern in value:
            problem = check_pattern(pattern)
            if problem is not None:
                raise ValueError(f"{pattern!r} {problem}")
        return value

    unknown_policy: Literal["reply", "ignore"] = "reply"
    """What a number that is not allowed, or texts nonsense, gets: a short reply or nothing."""
    name_max_chars: int = Field(40, ge=1, le=256)
    texts: dict[str, str] = Field(default_factory=dict)
    """Overrides for the replies (keys: help, stop, start, join_usage, unknown_meeting, not_allowed,
    no_session, name_set, name_invalid, budget, status, status_none); session notices are not among them."""

    @field_validator("texts")
    @classmethod
    def _known_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - REPLY_KEYS)
        if unknown:
            raise ValueError(f"unknown reply text(s) {', '.join(unknown)}; known: {', '.join(sorted(REPLY_KEYS))}")
        return value

    _resolve = field_validator("events_secret", mode="before")(_secret)


class TwilioSection(_Section):
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    base_url: str = "https://api.twilio.com"
    public_url: str | None = None
    """The URL Twilio calls for /channels/twilio-sms, exactly: signatures are computed over it."""
    status_url: str | None = None
    """The URL Twilio posts delivery statuses to (/channels/twilio-sms/status as the world reaches it);
    default: bridge.public_url (or http://host:port) + /channels/twilio-sms/status."""
    trust_forwarded: bool = False
    """Rebuild the called URL from X-Forwarded-Proto/-Host when no public_url is set (behind a proxy)."""
    ca_file: str | None = None
    """A CA bundle to trust for base_url (the sandbox's)."""

    _resolve = field_validator("auth_token", mode="before")(_secret)


class AdminSection(_Section):
    token: SecretStr | None = None
    """The operators' bearer token for /api/v1 (and the console); not set: the admin API is off. On the
    embedded sandbox `run` generates one and prints it."""

    failed_tokens_allowed: int = Field(5, ge=1, le=10_000)
    """Wrong tokens one address may send (to the API and the console's sign-in together) before its attempts
    wait: 1 s after the next wrong one, doubling with each further one up to lockout_max_s. A right token, or 15
    minutes without a wrong one, starts the count afresh. Behind a proxy every request comes from its address."""
    lockout_max_s: float = Field(300.0, gt=0, le=86_400)
    """The longest wait after repeated wrong tokens; meanwhile every attempt from that address is answered 429."""

    _resolve = field_validator("token", mode="before")(_secret)

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class SandboxSection(_Section):
    enabled: Literal["auto", "always", "never"] = "auto"
    """auto: run the embedded sandbox when no ACS resource (connection string or endpoint) is configured."""
    port: int = Field(0, ge=0, le=65535)
    demo: bool = True
    """Create a live demo meeting and a demo webhook client when the sandbox is embedded."""


class RelaySection(_Section):
    hold_while_joining: bool = True
    """Hold messages sent while joining or in the lobby and deliver them on admission; else answer 409."""
    thread_send_limits: list[tuple[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0)]]] = Field(
        default_factory=lambda: [(10, 10.0), (30, 60.0)]
    )
    """Chat sends per meeting thread the resource allows, as [sends, seconds] windows: the bridge paces each thread
    to them. ACS's default; Azure Support raises them on request, then set the raised ones ([] sends unpaced)."""
    poll_active_s: float = Field(0.8, gt=0, le=60)
    poll_idle_s: float = Field(10.0, gt=0, le=600)
    idle_after_s: float = Field(60.0, gt=0)
    inactivity_timeout_s: float = Field(3600.0, gt=0)
    max_attempts: int = Field(8, ge=1, le=100)
    merge_backlog: int = Field(3, ge=2)
    """Merge consecutive messages of one sender once this many wait for one thread."""
    max_pending_per_meeting: int = Field(150, gt=0)
    """Inbound messages one meeting may have waiting (queued or held); beyond it senders are told the meeting
    is busy (webhook 429, one SMS notice). 150 is five minutes of a thread's 30 sends per minute even when no
    two merge: a backlog older than that is no longer a conversation."""
    hold_refused_s: float = Field(600.0, gt=0)
    """While the meeting's chat refuses the bridge's guests though their call is connected (chat_refused), how long
    their messages are kept, to be sent once chat works again; after that they fail with that reason."""
    probe_refused_s: float = Field(30.0, gt=0, le=600)
    """While chat is refused, how often one read checks whether it works again."""
    repeat_retention_days: float = Field(7.0, gt=0, le=3650)
    """How long the provider id of each accepted message (webhook-id, SMS message id) is kept to drop repeats;
    older records are pruned. It must outlast every sender's retries: Event Grid retries for up to 24 hours,
    Standard Webhooks senders for a few days, Twilio does not retry inbound posts on its own."""
    max_pending_per_user: int = Field(50, gt=0)
    """Messages one external user may have waiting, inbound (beyond it: busy, as above) and outbound (beyond
    it, newer deliveries to them fail with backlog_full and they are told once). A sender's consecutive
    messages merge into one send, so 50 of theirs drain in a send or two."""


class WebhookClient(_Section):
    secrets: Annotated[list[SecretStr], Field(min_length=1)]
    """Standard Webhooks secrets (whsec_...); several during a rotation, the first signs callbacks."""
    callback_url: str | None = None
    max_message_bytes: int = Field(4096, ge=1, le=28_000)
    rate_per_second: float = Field(20.0, gt=0)
    """Requests per second this client may make (bursts of twice that); beyond it: 429."""

    @field_validator("secrets", mode="before")
    @classmethod
    def _resolve_all(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = [value]
        return [_secret(v, info) for v in value] if isinstance(value, list) else value

    @field_validator("secrets")
    @classmethod
    def _whsec(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            text = secret.get_secret_value()
            if not text.startswith("whsec_"):
                raise ValueError("each secret must start with whsec_")
            try:
                if len(base64.b64decode(text[6:], validate=True)) < 16:
                    raise ValueError("secret is shorter than 16 bytes")
            except binascii.Error as exc:
                raise ValueError("secret after whsec_ must be base64") from exc
        return value

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value


class MeetingConfig(_Section):
    link: str | None = None
    """A long join link or a short link (https://teams.microsoft.com/meet/<id>?p=<passcode>)."""
    graph_meeting_id: str | None = None
    organizer_id: str | None = None
    """The organizer's Entra object id: needed to look a meeting up in Graph."""
    code: str | None = Field(None, pattern=r"^[0-9]{4,10}$")
    """The short join code SMS users text; generated when absent."""
    name: str | None = None
    identity_mode: IdentityMode = IdentityMode.PER_USER
    """per_user, or shared (one identity per meeting speaks for everyone); "relay" is read as shared, with a warning."""
    display_name_template: str = "{name} ({channel})"
    sms_segment_cap: int | None = Field(None, ge=1, le=10)
    """Overrides sms.segment_cap for this meeting."""
    allow: list[str] = Field(default_factory=lambda: ["*"])
    """Who may join: addresses or patterns such as webhook:demo/*, sms:+1555*; * for anyone."""

    @field_validator("identity_mode", mode="before")
    @classmethod
    def _old_mode_name(cls, value: object) -> object:
        if value == DEPRECATED_SHARED:
            logging.getLogger(__name__).warning(
                'identity_mode "relay" is now called "shared"; the old name still works but will be dropped'
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> MeetingConfig:
        if bool(self.link) == bool(self.graph_meeting_id):
            raise ValueError("give exactly one of link or graph_meeting_id")
        if self.link:
            try:
                parse_join_link(self.link)
            except JoinLinkError as exc:
                raise ValueError(f"link: {exc}") from exc
        if self.graph_meeting_id and not self.organizer_id:
            raise ValueError("graph_meeting_id needs organizer_id")
        return self

    @field_validator("display_name_template")
    @classmethod
    def _template(cls, value: str) -> str:
        validate_template(value)
        return value

    @field_validator("organizer_id")
    @classmethod
    def _organizer(cls, value: str | None) -> str | None:
        return graph_ids.organizer_id(value) if value is not None else None

    @field_validator("graph_meeting_id")
    @classmethod
    def _graph_meeting(cls, value: str | None) -> str | None:
        return graph_ids.meeting_id(value) if value is not None else None


class Settings(_Section):
    bridge: BridgeSection = Field(default_factory=BridgeSection)
    http: HttpSection = Field(default_factory=HttpSection)
    acs: AcsSection = Field(default_factory=AcsSection)
    graph: GraphSection = Field(default_factory=GraphSection)
    sandbox: SandboxSection = Field(default_factory=SandboxSection)
    calls: CallsSection = Field(default_factory=CallsSection)
    events: EventsSection = Field(default_factory=EventsSection)
    sms: SmsSection = Field(default_factory=SmsSection)
    twilio: TwilioSection = Field(default_factory=TwilioSection)
    admin: AdminSection = Field(default_factory=AdminSection)
    relay: RelaySection = Field(default_factory=RelaySection)
    webhook_clients: dict[str, WebhookClient] = Field(default_factory=dict)
    meetings: list[MeetingConfig] = Field(default_factory=list)

    @field_validator("webhook_clients")
    @classmethod
    def _client_names(cls, value: dict[str, WebhookClient]) -> dict[str, WebhookClient]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"client name {name!r} may use letters, digits, _ . - only")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.sms.gateway == "twilio" and not self.use_sandbox:
            if not (self.twilio.account_sid and self.twilio.auth_token and self.sms.number):
                raise ValueError("sms.gateway twilio needs twilio.account_sid, twilio.auth_token and sms.number")
            exposed = self.bridge.host not in LOOPBACK_HOSTS
            if exposed and self.twilio.public_url is None and not self.twilio.trust_forwarded:
                # Signatures would be checked against the URL the caller's Host header names, so a request that
                # Twilio signed for another endpoint of the same account could be replayed here.
                raise ValueError(
                    "twilio.public_url is required when the bridge listens beyond loopback "
                    "(signatures are computed over the exact URL Twilio calls)"
                )
        if self.sandbox.enabled == "never" and not self.acs.configured:
            raise ValueError(
                "acs.connection_string (or acs.endpoint with a credential) is required when sandbox.enabled is never"
            )
        seen: dict[str, int] = {}
        for index, meeting in enumerate(self.meetings):
            if meeting.code is not None and meeting.code in seen:
                raise ValueError(
                    f"meetings.{index}.code: {meeting.code} is already used by meetings.{seen[meeting.code]}"
                )
            if meeting.code is not None:
                seen[meeting.code] = index
        return self

    @property
    def store_url(self) -> StoreUrl:
        return self.bridge.store_url or StoreUrl.sqlite(self.bridge.state_dir / "bridge.db")

    @property
    def store_file(self) -> Path:
        """The SQLite file (tests and tools that read it directly); a PostgreSQL store has none."""
        url = self.store_url
        if url.path is None:
            raise ConfigError(f"the store is not a file: {url}")
        return url.path

    @property
    def use_sandbox(self) -> bool:
        if self.sandbox.enabled == "always":
            return True
        return self.sandbox.enabled == "auto" and not self.acs.configured


def _env_value(raw: str) -> Any:
    """Lists and tables come as JSON; everything else stays a string for the setting's own type to parse."""
    if not raw.lstrip().startswith(("[", "{", '"')):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """BRIDGE__ACS__CONNECTION_STRING=... becomes {"acs": {"connection_string": ...}}; values may be JSON."""
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: conflicts with another override")
        node[parts[-1]] = _env_value(raw)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        # Environment names are upper case; a client named "MyApp" in the file is still the one overridden.
        key = next((k for k in out if k.lower() == key), key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    # A check across a section's fields says which field it is about first: "acs" + "credential: ..." is one key.
    key = re.match(r"([a-z_][a-z0-9_]*): ", message)
    if key is not None and where:
        where, message = f"{where}.{key[1]}", message[key.end() :]
    where = where or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in f"{where}: {message}{more}")


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate; raise ConfigError with one line naming the offending key."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    try:
        return Settings.model_validate(data, context={"environ": os.environ if environ is None else environ})
    except ValidationError as exc:
        source = f" in {path}" if path is not None else ""
        raise ConfigError(f"{_describe(exc)}{source}") from exc


SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
