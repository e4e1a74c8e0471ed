//! The configuration as written: the serde shapes of the plugin's JSON, every object with
//! `deny_unknown_fields`, every optional field an `Option` (its default is applied where it is
//! compiled), and `TagsAs`, the one shape the compiled form keeps as written.
//! May use: the raw shapes of the rooms it embeds (`ratelimit`, `statics`, `signing`,
//! `discovery`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) providers: BTreeMap<String, RawProvider>,
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    pub(super) max_token_bytes: Option<usize>,
    #[serde(default)]
    pub(super) bypass_cors_preflight: Option<bool>,
    #[serde(default)]
    pub(super) cache: Option<RawCache>,
    #[serde(default)]
    pub(super) log: Option<RawLog>,
    #[serde(default)]
    pub(super) rate_limits: Vec<crate::ratelimit::RawLimit>,
    #[serde(default)]
    pub(super) host_crypto: Option<bool>,
    #[serde(default)]
    pub(super) decision_tags: Option<TagsAs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(default)]
    pub(super) max_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default)]
    pub(super) allowed: bool,
    #[serde(default)]
    pub(super) claims: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    #[serde(default)]
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) static_credentials: Option<crate::statics::RawStatic>,
    #[serde(default)]
    pub(super) typ: Option<String>,
    #[serde(default)]
    pub(super) audiences: Option<Vec<String>>,
    #[serde(default)]
    pub(super) jwks: Option<Value>,
    #[serde(default)]
    pub(super) remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    pub(super) hmac_secret_env: Option<OneOrMany>,
    #[serde(default)]
    pub(super) from_headers: Option<Vec<RawHeaderSource>>,
    #[serde(default)]
    pub(super) from_cookies: Option<Vec<String>>,
    #[serde(default)]
    pub(super) from_params: Option<Vec<String>>,
    #[serde(default)]
    pub(super) clock_skew_seconds: Option<u64>,
    #[serde(default)]
    pub(super) algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub(super) subject_claim: Option<String>,
    #[serde(default)]
    pub(super) scope_claims: Option<Vec<String>>,
    #[serde(default)]
    pub(super) required_claims: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) max_lifetime_seconds: Option<u64>,
    #[serde(default)]
    pub(super) require_expiration: Option<bool>,
    #[serde(default)]
    pub(super) forward_token: Option<bool>,
    #[serde(default)]
    pub(super) claim_to_headers: Vec<RawClaimHeader>,
    #[serde(default)]
    pub(super) max_claim_header_bytes: Option<usize>,
    #[serde(default)]
    pub(super) signed_requests: Option<crate::signing::RawSigning>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteJwks {
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) authority: Option<String>,
    #[serde(default)]
    pub(super) refresh_seconds: Option<u64>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) max_bytes: Option<usize>,
    #[serde(default)]
    pub(super) refetch_interval_seconds: Option<u64>,
    #[serde(default)]
    pub(super) max_waiting: Option<usize>,
    /// `true`, `false` or an object ([`crate::discovery::RawDiscovery`]).
    #[serde(default)]
    pub(super) discovery: Option<crate::discovery::RawDiscoveryOpt>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderSource {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimHeader {
    /// A dot path (`"realm_access.roles"`) or a list of member names (`["https://x.io/roles"]`).
    pub(super) claim: Value,
    pub(super) header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(rename = "match")]
    pub(super) match_: RawMatch,
    #[serde(default)]
    pub(super) allow: Option<bool>,
    #[serde(default)]
    pub(super) requires: Option<RawRequires>,
    #[serde(default)]
    pub(super) audit: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) methods: Option<Vec<String>>,
    #[serde(default)]
    pub(super) ignore_case: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequires {
    #[serde(default)]
    pub(super) providers: Option<Vec<String>>,
    #[serde(default)]
    pub(super) scopes_all: Vec<String>,
    #[serde(default)]
    pub(super) scopes_any: Vec<String>,
    #[serde(default)]
    pub(super) claims: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) signed: bool,
}

/// Where the decision (`auth.decision`, `auth.service`, `auth.reason`, `auth.provider`) is
/// published for Envoy's tracer and access log (`decision_tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagsAs {
    /// Filter state `wasm.svcauth_decision`, `wasm.svcauth_service`, `wasm.svcauth_reason`,
    /// `wasm.svcauth_provider` (tags: `value: "%FILTER_STATE(wasm.svcauth_decision:PLAIN)%"`):
    /// never forwarded upstream. The default.
    #[default]
    FilterState,
    /// The request headers `x-svcauth-decision`, `-service`, `-reason`, `-provider` (tags:
    /// `request_header`), for tracers that read only headers (Istio's Telemetry API). On
    /// allowed requests they reach the upstream too.
    RequestHeaders,
}
