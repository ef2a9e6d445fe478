//! AdmissionReview in, AdmissionReview out: decode, decide, encode. The HTTP
//! layer only maps [`ReviewError`] to a status code.

use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};

use crate::{
    config::InjectorConfig,
    mutate::{self, Decision, SkipReason},
};

/// A request that is not a usable AdmissionReview: answered with 400.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Injected,
    Skipped,
    Denied,
    /// Not a pod CREATE: allowed untouched.
    Ignored,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::Skipped => "skipped",
            Self::Denied => "denied",
            Self::Ignored => "ignored",
        }
    }
}

/// Who the review is about, for the request's tracing span.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

pub struct Reviewed {
    pub review: AdmissionReview<DynamicObject>,
    pub outcome: Outcome,
    pub subject: Subject,
}

pub fn review(body: &[u8], config: &InjectorConfig) -> Result<Reviewed, ReviewError> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(ReviewError::Malformed)?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let subject = Subject {
        uid: request.uid.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request
            .object
            .as_ref()
            .and_then(|o| {
                o.metadata
                    .name
                    .clone()
                    .or_else(|| o.metadata.generate_name.clone())
            })
            .unwrap_or_else(|| request.name.clone()),
    };
    let (response, outcome) = respond(&request, config);
    Ok(Reviewed {
        review: response.into_review(),
        outcome,
        subject,
    })
}

fn respond(
    request: &AdmissionRequest<DynamicObject>,
    config: &InjectorConfig,
) -> (AdmissionResponse, Outcome) {
    let allowed = AdmissionResponse::from(request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    let object = match (&request.operation, is_pod, &request.object) {
        (Operation::Create, true, Some(object)) => object,
        _ => return (allowed, Outcome::Ignored),
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => {
            return (
                allowed.deny(format!(
                    "secret-injector: the object is not a valid Pod: {e}"
                )),
                Outcome::Denied,
            );
        }
    };
    match mutate::decide(&pod, config) {
        Ok(Decision::Skip { reason, warnings }) => {
            let outcome = match reason {
                SkipReason::NotOptedIn | SkipReason::AlreadyInjected => Outcome::Skipped,
            };
            (with_warnings(allowed, warnings), outcome)
        }
        Ok(Decision::Inject(mutation)) => match allowed.clone().with_patch(mutation.patch) {
            Ok(response) => (
                with_warnings(response, mutation.warnings),
                Outcome::Injected,
            ),
            Err(e) => (
                allowed.deny(format!("secret-injector: could not encode the patch: {e}")),
                Outcome::Denied,
            ),
        },
        Err(e) => (
            allowed.deny(format!("secret-injector: {e}")),
            Outcome::Denied,
        ),
    }
}

/// Encodes a review for the wire with `response.patch` as base64, as the
/// apiserver's Go types expect for `[]byte`; kube-core would write a JSON array
/// of numbers (kube-rs #1781), which is three times larger.
pub fn encode(review: &AdmissionReview<DynamicObject>) -> serde_json::Result<Vec<u8>> {
    use base64::Engine;
    let mut value = serde_json::to_value(review)?;
    if let Some(patch) = review.response.as_ref().and_then(|r| r.patch.as_ref())
        && let Some(slot) = value.pointer_mut("/response/patch")
    {
        *slot = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    serde_json::to_vec(&value)
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}
