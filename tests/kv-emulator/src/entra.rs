//! Entra ID: client-credentials token endpoint (secret or federated
//! assertion), OpenID configuration for MSAL, and an App-Service-style
//! managed identity endpoint.

// Handlers return a ready `Response` as the error of early exits (cold paths).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State as AxState};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;
use serde_json::json;

use crate::config::{FEDERATION_AUDIENCE, SYSTEM_ASSIGNED};
use crate::http;
use crate::state::{FaultTarget, State};

const IDENTITY: &str = "@identity";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Entra's error body (`error`, `error_description` with the AADSTS code, ...).
fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = http::guid();
    let correlation = http::guid();
    let ts = time::OffsetDateTime::now_utc();
    let timestamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        ts.year(),
        u8::from(ts.month()),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second()
    );
    http::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}"),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// Latency / outage / throttling of the identity endpoints; `Err` = answer now.
async fn identity_faults(state: &State) -> Result<(), Response> {
    let d = state.fault_decision(&[FaultTarget::Identity]);
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    if d.down {
        return Err(http::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable (emulated outage)."}),
        ));
    }
    if let Some(retry_after) = d.throttle_retry_after {
        let mut r = http::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "temporarily_unavailable", "error_description": "Too many requests (emulated throttling)."}),
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after));
        return Err(r);
    }
    Ok(())
}

fn tenant_ok(state: &State, tenant: &str) -> Result<(), Response> {
    if tenant.eq_ignore_ascii_case(state.tenant_id()) {
        Ok(())
    } else {
        Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ))
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`
pub(crate) async fn openid_configuration(
    AxState(state): AxState<State>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let resp = match identity_faults(&state)
        .await
        .and_then(|()| tenant_ok(&state, &tenant))
    {
        Err(r) => r,
        Ok(()) => {
            let host = http::host(
                &headers,
                &uri,
                state.shared().url.trim_start_matches("https://"),
            );
            let base = format!("https://{host}/{tenant}");
            http::json(
                StatusCode::OK,
                &json!({
                    "token_endpoint": format!("{base}/oauth2/v2.0/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "jwks_uri": format!("https://{host}/{tenant}/discovery/v2.0/keys"),
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": format!("{base}/v2.0"),
                    "request_uri_parameter_supported": false,
                    "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
                    "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
                    "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com",
                    "cloud_graph_host_name": "graph.windows.net",
                    "msgraph_host": "graph.microsoft.com",
                }),
            )
        }
    };
    state.record(IDENTITY, "GET", uri.path(), None, resp.status().as_u16());
    resp
}

/// `POST /{tenant}/oauth2/v2.0/token` (client credentials).
pub(crate) async fn token(
    AxState(state): AxState<State>,
    Path(tenant): Path<String>,
    uri: Uri,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let client_id = form.get("client_id").cloned();
    let resp = match issue(&state, &tenant, &form).await {
        Ok(r) | Err(r) => r,
    };
    tracing::info!(
        client_id = client_id.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        "token request"
    );
    state.record(
        IDENTITY,
        "POST",
        uri.path(),
        client_id.as_deref(),
        resp.status().as_u16(),
    );
    resp
}

async fn issue(
    state: &State,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Result<Response, Response> {
    identity_faults(state).await?;
    tenant_ok(state, tenant)?;
    let missing = |p: &str| {
        aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{p}'."),
        )
    };
    let grant = form
        .get("grant_type")
        .ok_or_else(|| missing("grant_type"))?;
    if grant != "client_credentials" {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = form
        .get("client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| missing("client_id"))?;
    let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
    let audience = scope
        .split_whitespace()
        .find_map(|s| s.strip_suffix("/.default"))
        .ok_or_else(|| {
            aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
            )
        })?;
    let shared = state.shared();

    if let Some(secret) = form.get("client_secret") {
        match shared.client_secrets.get(client_id) {
            None => {
                return Err(aad_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    700016,
                    &format!(
                        "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
                    ),
                ));
            }
            Some(expected) if expected != secret => {
                return Err(aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
            Some(_) => {}
        }
    } else if let Some(assertion) = form.get("client_assertion") {
        let kind = form.get("client_assertion_type").map_or("", String::as_str);
        if kind != JWT_BEARER {
            return Err(aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                &format!(
                    "Client assertion type '{kind}' is not supported; expected '{JWT_BEARER}'."
                ),
            ));
        }
        verify_assertion(state, client_id, assertion)?;
    } else {
        return Err(aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    }

    let (token, lifetime, _) = state.issue_token(client_id, audience);
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
    ))
}

#[derive(Deserialize)]
struct AssertionClaims {
    sub: Option<String>,
}

/// Checks a federated assertion: RS256 (or ES256) signature by a configured
/// key, `aud` containing `api://AzureADTokenExchange`, `exp` in the future,
/// and `sub` among the client's allowed subjects when any are configured.
fn verify_assertion(state: &State, client_id: &str, assertion: &str) -> Result<(), Response> {
    let malformed = || {
        aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let bad_signature = || {
        aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            50013,
            "Assertion failed signature validation. [Reason - The key was not found.]",
        )
    };
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| malformed())?;
    let shared = state.shared();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[FEDERATION_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.leeway = 0;
    validation.validate_nbf = true;
    for key in shared
        .federated_keys
        .iter()
        .filter(|k| k.algorithm == header.alg)
    {
        match jsonwebtoken::decode::<AssertionClaims>(assertion, &key.key, &validation) {
            Ok(data) => {
                let sub = data.claims.sub.unwrap_or_default();
                if let Some(allowed) = shared.federated_subjects.get(client_id)
                    && !allowed.contains(&sub)
                {
                    return Err(aad_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_client",
                        700213,
                        &format!(
                            "No matching federated identity record found for presented assertion subject '{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
                        ),
                    ));
                }
                return Ok(());
            }
            Err(e) => match e.kind() {
                ErrorKind::InvalidSignature => continue,
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                    return Err(aad_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_client",
                        700024,
                        "Client assertion is not within its valid time range.",
                    ));
                }
                ErrorKind::InvalidAudience | ErrorKind::MissingRequiredClaim(_) => {
                    return Err(aad_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_client",
                        700212,
                        &format!(
                            "No matching federated identity record found for presented assertion audience; expected '{FEDERATION_AUDIENCE}' and the claims exp, sub."
                        ),
                    ));
                }
                _ => return Err(malformed()),
            },
        }
    }
    Err(bad_signature())
}

#[derive(Deserialize)]
pub(crate) struct MsiQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    resource: Option<String>,
    client_id: Option<String>,
    mi_res_id: Option<String>,
    object_id: Option<String>,
    principal_id: Option<String>,
}

/// `GET /metadata/identity/oauth2/token?api-version=...&resource=...[&client_id=...]`
/// with `Metadata: true`: the Instance Metadata Service a VM (and an AKS
/// node's pods) reach at 169.254.169.254.
pub(crate) async fn imds_token(
    AxState(state): AxState<State>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    managed_identity_request(state, uri, headers, "IMDS token request", false).await
}

async fn imds_issue(
    state: &State,
    q: Option<MsiQuery>,
    headers: &HeaderMap,
    identity: &str,
) -> Result<Response, Response> {
    let bad = |status: StatusCode, error: &str, description: &str| {
        http::json(
            status,
            &json!({"error": error, "error_description": description}),
        )
    };
    if !state.shared().imds {
        return Err(bad(
            StatusCode::NOT_FOUND,
            "not_found",
            "IMDS is not enabled on this emulator.",
        ));
    }
    identity_faults(state).await?;
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        ));
    }
    let q = q.ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The query string is malformed.",
        )
    })?;
    if q.api_version.is_none() {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        ));
    }
    let resource = q.resource.filter(|r| !r.is_empty()).ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        )
    })?;
    let audience = resource.strip_suffix("/.default").unwrap_or(&resource);
    let (token, expires_in, expires_on) = state.issue_token(identity, audience);
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "client_id": identity,
            "expires_in": expires_in.to_string(),
            "expires_on": expires_on.to_string(),
            "ext_expires_in": expires_in.to_string(),
            "not_before": (expires_on - i64::try_from(expires_in).unwrap_or(0)).to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    ))
}

/// `GET /msi/token?api-version=2019-08-01&resource=...[&client_id=...]` with `X-IDENTITY-HEADER`.
pub(crate) async fn msi_token(
    AxState(state): AxState<State>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    managed_identity_request(state, uri, headers, "managed identity token request", true).await
}

/// Both managed-identity endpoints: which identity was asked for (else the
/// system-assigned one), the answer, the log line and the counter.
async fn managed_identity_request(
    state: State,
    uri: Uri,
    headers: HeaderMap,
    what: &'static str,
    app_service: bool,
) -> Response {
    let q: Option<MsiQuery> = axum::extract::Query::try_from_uri(&uri).ok().map(|q| q.0);
    let identity = q
        .as_ref()
        .and_then(|q| {
            q.client_id
                .clone()
                .or_else(|| q.mi_res_id.clone())
                .or_else(|| q.object_id.clone())
                // App Service also takes principal_id; IMDS does not.
                .or_else(|| q.principal_id.clone().filter(|_| app_service))
        })
        .unwrap_or_else(|| SYSTEM_ASSIGNED.to_owned());
    let issued = if app_service {
        msi_issue(&state, q, &headers, &identity).await
    } else {
        imds_issue(&state, q, &headers, &identity).await
    };
    let resp = match issued {
        Ok(r) | Err(r) => r,
    };
    tracing::info!(identity = %identity, status = resp.status().as_u16(), "{what}");
    state.record(
        IDENTITY,
        "GET",
        uri.path(),
        Some(&identity),
        resp.status().as_u16(),
    );
    resp
}

async fn msi_issue(
    state: &State,
    q: Option<MsiQuery>,
    headers: &HeaderMap,
    identity: &str,
) -> Result<Response, Response> {
    identity_faults(state).await?;
    let bad = |status: StatusCode, msg: &str| {
        http::json(
            status,
            &json!({"statusCode": status.as_u16(), "message": msg}),
        )
    };
    let Some(expected) = &state.shared().identity_header else {
        return Err(bad(
            StatusCode::NOT_FOUND,
            "No managed identity is configured on this emulator.",
        ));
    };
    let sent = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok());
    if sent != Some(expected.as_str()) {
        return Err(bad(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is missing or wrong.",
        ));
    }
    let q = q.ok_or_else(|| bad(StatusCode::BAD_REQUEST, "The query string is malformed."))?;
    if q.api_version.is_none() {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "Required query variable 'api-version' is missing.",
        ));
    }
    let resource = q.resource.filter(|r| !r.is_empty()).ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            "Required query variable 'resource' is missing.",
        )
    })?;
    let audience = resource.strip_suffix("/.default").unwrap_or(&resource);
    let (token, _, expires_on) = state.issue_token(identity, audience);
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity,
        }),
    ))
}
