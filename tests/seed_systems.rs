//! The five kinds of systems svcauth replaces, each played end to end through a real Envoy with
//! its example config from `envoy/examples/` (see docs/migrating.md).

use std::time::Duration;

use serde_json::{json, Map, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, SigningKey};
use svcauth_tests::{http, now, repo_root, EchoUpstream, Envoy, Opts, Response};

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("envoy/examples").join(name)).unwrap()
}

fn hs256(secret: &str, claims: Value) -> String {
    sign(
        &SigningKey::Hmac(secret.as_bytes().to_vec()),
        Alg::HS256,
        &Map::new(),
        &claims,
    )
    .unwrap()
}

fn reason(r: &Response) -> String {
    r.json()["reason"].as_str().unwrap_or_default().to_string()
}

/// Seed 1: Django backend calling FastAPI AI services with HS256 tokens in X-Service-Token.
#[test]
fn ecommerce_backend_calls_ai_services_with_hs256_service_tokens() {
    let secret = "django-fastapi-shared-secret-0123456789abcdef";
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port()).env("SERVICE_AUTH_SECRET", secret);
    let envoy = Envoy::start_plugin(&example("ecommerce-ai.json"), &opts);
    let token = |scope: &str| {
        hs256(
            secret,
            json!({"iss": "ecommerce-backend", "sub": "django-backend", "aud": "ai-services",
                             "iat": now(), "exp": now() + 300, "scope": scope}),
        )
    };
    let wildcard = token("ai-services:* internal:*");
    let read_only = token("ai-services:read");
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = http(
        envoy.port(),
        "GET",
        "/ai/recommendations?user=7",
        &[("x-service-token", &wildcard), ("traceparent", tp)],
    );
    assert_eq!(r.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header("x-service-name"), Some("django-backend"));
    assert_eq!(
        seen.header("traceparent"),
        Some(tp),
        "the caller's trace context goes through untouched"
    );
    assert_eq!(
        http(
            envoy.port(),
            "POST",
            "/ai/train",
            &[("x-service-token", &wildcard)]
        )
        .status,
        200
    );
    assert_eq!(
        http(
            envoy.port(),
            "GET",
            "/internal/cache",
            &[("x-service-token", &wildcard)]
        )
        .status,
        200
    );
    let r = http(
        envoy.port(),
        "POST",
        "/ai/train",
        &[("x-service-token", &read_only)],
    );
    assert_eq!((r.status, reason(&r)), (403, "insufficient_scope".into()));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains(r#"scope="ai-services:write""#));
    assert_eq!(
        http(
            envoy.port(),
            "GET",
            "/ai/recommendations",
            &[("x-service-token", &read_only)]
        )
        .status,
        200
    );
    // An Authorization bearer is not where these services send tokens.
    let r = http(
        envoy.port(),
        "GET",
        "/ai/recommendations",
        &[("authorization", &format!("Bearer {read_only}"))],
    );
    assert_eq!((r.status, reason(&r)), (401, "token_missing".into()));
    assert_eq!(http(envoy.port(), "GET", "/health", &[]).status, 200);
    assert_eq!(http(envoy.port(), "GET", "/metrics", &[]).status, 200);
    assert_eq!(
        http(envoy.port(), "POST", "/metrics", &[]).status,
        403,
        "only GET /metrics is open"
    );
}

/// Seed 2: a multi-tenant SaaS gateway; tenant routes only for service tokens, identity headers
/// produced from claims, an audit line per tenant call.
#[test]
fn saas_gateway_admits_only_service_tokens_to_tenant_routes_and_audits_them() {
    let secret = "saas-platform-jwt-secret-0123456789abcdefgh";
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port()).env("PLATFORM_JWT_SECRET", secret);
    let envoy = Envoy::start_plugin(&example("saas-gateway.json"), &opts);
    let claims = |extra: Value| {
        let mut c = json!({"iss": "https://auth.saas.example", "aud": "tenant-api", "iat": now(), "exp": now() + 300,
                           "scope": "tenants:delete", "tenant_id": "t-42"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let service = hs256(
        secret,
        claims(
            json!({"type": "service", "is_service": true, "service": "tenant-deletion-orchestrator", "role": "system"}),
        ),
    );
    let user = hs256(
        secret,
        claims(
            json!({"type": "user", "is_service": false, "service": "web", "role": "owner", "sub": "alice"}),
        ),
    );
    let auth = format!("Bearer {service}");
    let spoof = [
        ("authorization", auth.as_str()),
        ("x-user-type", "admin"),
        ("x-user-role", "superuser"),
        ("x-service-name", "billing"),
    ];
    let r = http(envoy.port(), "DELETE", "/tenant/t-42", &spoof);
    assert_eq!(r.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header_all("x-user-type"), vec!["service"]);
    assert_eq!(seen.header_all("x-user-role"), vec!["system"]);
    assert_eq!(
        seen.header_all("x-service-name"),
        vec!["tenant-deletion-orchestrator"]
    );
    assert_eq!(seen.header("x-tenant-id"), Some("t-42"));
    let r = http(
        envoy.port(),
        "DELETE",
        "/tenant/t-42",
        &[("authorization", &format!("Bearer {user}"))],
    );
    assert_eq!(
        (r.status, reason(&r)),
        (403, "claim_not_allowed".into()),
        "a validly signed user token"
    );
    // Other routes take any valid token, and the client's gateway headers never pass.
    let r = http(
        envoy.port(),
        "GET",
        "/profile",
        &[
            ("authorization", &format!("Bearer {user}")),
            ("x-user-type", "service"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        upstream.last_request().unwrap().header_all("x-user-type"),
        vec!["user"]
    );
    let line = envoy.wait_log_contains(r#""svcauth":"allow""#, Duration::from_secs(5));
    let audit: Vec<Value> = line
        .lines()
        .filter_map(|l| l.find(r#"{"claims""#).map(|i| &l[i..]))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    assert_eq!(
        audit.len(),
        1,
        "one audit line, for the tenant route only: {line}"
    );
    assert_eq!(audit[0]["path"], "/tenant/t-42");
    assert_eq!(audit[0]["subject"], "tenant-deletion-orchestrator");
    assert_eq!(audit[0]["claims"]["tenant_id"], "t-42");
}

/// Seed 3: a data pipeline API in front of MLflow; the caller's own headers pass through.
#[test]
fn mlflow_pipeline_keeps_the_callers_headers_and_keeps_401_and_403_apart() {
    let secret = "pipeline-service-secret-0123456789abcdefgh";
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port())
        .env("PIPELINE_SERVICE_SECRET", secret)
        .hcm_extra("generate_request_id: false");
    let envoy = Envoy::start_plugin(&example("mlflow-pipeline.json"), &opts);
    let token = |scope: &str| {
        hs256(
            secret,
            json!({"iss": "https://auth.data.example", "sub": "feature-pipeline", "aud": "mlflow",
                             "iat": now(), "exp": now() + 300, "scope": scope}),
        )
    };
    let reader = token("mlflow:read");
    let user_auth = "Bearer user-session-token-of-alice";
    let mine = [
        ("x-service-token", reader.as_str()),
        ("authorization", user_auth),
        ("x-user-id", "u-alice-77"),
        ("x-tenant-id", "tenant-xyz-91"),
    ];
    let r = http(
        envoy.port(),
        "GET",
        "/api/2.0/mlflow/experiments/list",
        &mine,
    );
    assert_eq!(r.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header("authorization"), Some(user_auth));
    assert_eq!(seen.header("x-user-id"), Some("u-alice-77"));
    assert_eq!(seen.header("x-tenant-id"), Some("tenant-xyz-91"));
    assert_eq!(seen.header("x-service-name"), Some("feature-pipeline"));
    let rid = seen
        .header("x-request-id")
        .expect("a request id is added when missing");
    assert_eq!(rid.len(), 32);
    let kept = http(
        envoy.port(),
        "GET",
        "/api/2.0/mlflow/runs/get",
        &[
            ("x-service-token", &reader),
            ("x-request-id", "caller-rid-1"),
        ],
    );
    assert_eq!(kept.status, 200);
    assert_eq!(
        upstream.last_request().unwrap().header_all("x-request-id"),
        vec!["caller-rid-1"]
    );
    let no_token = http(
        envoy.port(),
        "POST",
        "/api/2.0/mlflow/runs/create",
        &mine[1..],
    );
    assert_eq!(
        (no_token.status, reason(&no_token)),
        (401, "token_missing".into())
    );
    let writes = http(envoy.port(), "POST", "/api/2.0/mlflow/runs/create", &mine);
    assert_eq!(
        (writes.status, reason(&writes)),
        (403, "insufficient_scope".into())
    );
    envoy.wait_log_contains(r#""reason":"insufficient_scope""#, Duration::from_secs(5));
    let log = envoy.log();
    for theirs in [
        "u-alice-77",
        "tenant-xyz-91",
        "user-session-token-of-alice",
        &reader,
    ] {
        assert!(!log.contains(theirs), "{theirs} must not be in the log");
    }
}

/// Seed 4: OAuth2 client-credentials services with RFC 9068 access tokens and per-client limits.
#[test]
fn oauth2_clients_need_at_jwt_a_trusted_claim_for_admin_and_are_rate_limited_per_client() {
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port()).concurrency(2);
    let envoy = Envoy::start_plugin(&example("oauth2-client-credentials.json"), &opts);
    let at = |client: &str, scope: &str, extra: Value, typ: &str| {
        let mut c = json!({"iss": "https://login.example.com/oauth2", "aud": "https://api.example.com",
                           "client_id": client, "sub": client, "iat": now(), "exp": now() + 300, "scope": scope,
                           "jti": format!("{client}-{scope}")});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let mut h = Map::new();
        h.insert("kid".into(), "oauth-2026-11".into());
        h.insert("typ".into(), typ.into());
        sign(&fixtures::signing_key(Fixture::RsaA), Alg::RS256, &h, &c).unwrap()
    };
    let call = |t: &str, path: &str| {
        http(
            envoy.port(),
            "GET",
            path,
            &[("authorization", &format!("Bearer {t}"))],
        )
    };
    let api = at("inventory-client", "api:read", json!({}), "at+jwt");
    assert_eq!(call(&api, "/items").status, 200);
    assert_eq!(
        upstream.last_request().unwrap().header("x-service-name"),
        Some("inventory-client")
    );
    let plain_jwt = at("inventory-client", "api:read", json!({}), "JWT");
    let r = call(&plain_jwt, "/items");
    assert_eq!((r.status, reason(&r)), (401, "wrong_token_type".into()));
    let admin_untrusted = at(
        "ops-client",
        "admin",
        json!({"trusted_client": false}),
        "at+jwt",
    );
    let admin_trusted = at(
        "ops-client",
        "admin",
        json!({"trusted_client": true}),
        "at+jwt",
    );
    let r = call(&admin_untrusted, "/admin/flush");
    assert_eq!((r.status, reason(&r)), (403, "claim_not_allowed".into()));
    assert_eq!(call(&admin_trusted, "/admin/flush").status, 200);
    // reporting-client: burst 3, then 429 with Retry-After, across both workers.
    let reports = at("reporting-client", "reports:read", json!({}), "at+jwt");
    let statuses: Vec<u16> = (0..5)
        .map(|_| call(&reports, "/reports/daily").status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let r = call(&reports, "/reports/daily");
    assert_eq!((r.status, reason(&r)), (429, "rate_limited".into()));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.header("www-authenticate").is_none());
    // Another client is not limited by reporting-client's bucket.
    assert_eq!(call(&api, "/items").status, 200);
    envoy.wait_log_contains(r#""reason":"rate_limited""#, Duration::from_secs(5));
    envoy.settle_counters();
    assert_eq!(
        envoy.stat("wasmcustom.svcauth.denied.rate_limited"),
        Some(3)
    );
    // The bucket refills at 60 per minute.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call(&reports, "/reports/daily").status, 200);
}

/// Seed 5: a backend calling the auth service with static X-Service-ID / X-Service-Secret.
#[test]
fn static_service_credentials_are_checked_against_salted_hashes_and_never_forwarded() {
    let salt = b"0011223344556677";
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let backend_secret = "backend-static-secret-9f8e7d6c";
    let creds = format!(
        "backend:{}:{},worker:{}:{}",
        hex(salt),
        svcauth_filter::statics::hash_hex(salt, backend_secret.as_bytes()),
        hex(b"another-salt-xyz"),
        svcauth_filter::statics::hash_hex(b"another-salt-xyz", b"worker-secret"),
    );
    let jwt_secret = "auth-service-jwt-secret-0123456789abcdefgh";
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port())
        .env("SVCAUTH_LEGACY_CREDENTIALS", &creds)
        .env("AUTH_SERVICE_JWT_SECRET", jwt_secret);
    let envoy = Envoy::start_plugin(&example("static-credentials.json"), &opts);
    let good = [
        ("x-service-id", "backend"),
        ("x-service-secret", backend_secret),
    ];
    let r = http(envoy.port(), "POST", "/auth/verify", &good);
    assert_eq!(r.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header("x-service-name"), Some("backend"));
    assert_eq!(
        seen.header("x-service-scopes"),
        Some("auth:verify users:read")
    );
    assert_eq!(
        seen.header("x-service-secret"),
        None,
        "the secret never goes upstream"
    );
    assert_eq!(http(envoy.port(), "GET", "/users/9", &good).status, 200);
    let wrong = [
        ("x-service-id", "backend"),
        ("x-service-secret", "backend-static-secret-9f8e7d6X"),
    ];
    let r = http(envoy.port(), "POST", "/auth/verify", &wrong);
    assert_eq!((r.status, reason(&r)), (401, "invalid_credentials".into()));
    let worker = [
        ("x-service-id", "worker"),
        ("x-service-secret", "worker-secret"),
    ];
    let r = http(envoy.port(), "GET", "/users/9", &worker);
    assert_eq!(
        (r.status, reason(&r)),
        (403, "insufficient_scope".into()),
        "worker may only verify"
    );
    // Routes for tokens only never take static credentials.
    let r = http(envoy.port(), "GET", "/orders", &good);
    assert_eq!((r.status, reason(&r)), (403, "provider_not_allowed".into()));
    // The token path still works beside it.
    let t = hs256(
        jwt_secret,
        json!({"iss": "https://auth.internal", "aud": "auth-service", "sub": "gateway",
                                     "iat": now(), "exp": now() + 60, "scope": "auth:verify"}),
    );
    assert_eq!(
        http(
            envoy.port(),
            "POST",
            "/auth/verify",
            &[("authorization", &format!("Bearer {t}"))]
        )
        .status,
        200
    );
    envoy.wait_log_contains(r#""reason":"invalid_credentials""#, Duration::from_secs(5));
    let log = envoy.log();
    assert!(
        !log.contains(backend_secret)
            && !log.contains("backend-static-secret-9f8e7d6X")
            && !log.contains("worker-secret")
    );
}

#[test]
fn static_credentials_without_their_environment_variable_are_refused_at_load() {
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port()).env(
        "AUTH_SERVICE_JWT_SECRET",
        "auth-service-jwt-secret-0123456789abcdefgh",
    );
    let yaml = svcauth_tests::bootstrap(&example("static-credentials.json"), &opts);
    let log = Envoy::start_expect_failure(&yaml, Duration::from_secs(30));
    assert!(
        log.contains("providers.legacy.static_credentials.credentials_env: environment variable SVCAUTH_LEGACY_CREDENTIALS is not set"),
        "{}",
        svcauth_tests::tail(&log, 20)
    );
}

#[test]
fn every_example_config_is_accepted_by_the_filter_config_compiler() {
    let dir = repo_root().join("envoy/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read(&path).unwrap();
        let env = |k: &str| match k {
            "SVCAUTH_LEGACY_CREDENTIALS" => {
                Some(format!("svc:{}:{}", "00".repeat(8), "11".repeat(32)))
            }
            _ => Some("an-example-secret-of-at-least-32-bytes!!".to_string()),
        };
        svcauth_filter::config::Config::from_json(&text, &env)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert_eq!(n, 5);
}
