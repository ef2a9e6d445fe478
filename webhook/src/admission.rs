//! AdmissionReview in, AdmissionReview out: decode, decide, encode. The HTTP
//! layer only maps [`ReviewError`] to a status code.

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};

use crate::{
    accounts::{NoAccounts, ServiceAccounts},
    classes::{Context, NoClasses, ProviderClasses},
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
    review_with(body, config, &NoClasses, &NoAccounts, false)
}

/// A review with SecretProviderClasses to read and, when the webhook was
/// called for a CSI-compatible namespace, CSI volume conversion.
pub fn review_with(
    body: &[u8],
    config: &InjectorConfig,
    classes: &dyn ProviderClasses,
    accounts: &dyn ServiceAccounts,
    csi_compat: bool,
) -> Result<Reviewed, ReviewError> {
    // Pods are what this webhook is registered for: decode the object straight
    // into a Pod. Anything else (or a pod that is not one) takes the slow path.
    if let Ok(review) = serde_json::from_slice::<AdmissionReview<Pod>>(body) {
        let request: AdmissionRequest<Pod> =
            review.try_into().map_err(|_| ReviewError::NoRequest)?;
        let subject = subject(&request, request.object.as_ref().map(|p| &p.metadata));
        let ctx = Context {
            namespace: request.namespace.as_deref().unwrap_or("default"),
            classes,
            accounts,
            csi_compat,
        };
        let (response, outcome) = respond_to_pod(&request, config, &ctx);
        return Ok(Reviewed {
            review: response.into_review(),
            outcome,
            subject,
        });
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(ReviewError::Malformed)?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let subject = subject(&request, request.object.as_ref().map(|o| &o.metadata));
    let allowed = AdmissionResponse::from(&request);
    let (response, outcome) = if is_pod_create(&request) {
        // A Pod CREATE whose object does not decode as a Pod.
        let reason = serde_json::to_value(&request.object)
            .and_then(serde_json::from_value::<Pod>)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        (
            allowed.deny(format!(
                "secret-injector: the object is not a valid Pod: {reason}"
            )),
            Outcome::Denied,
        )
    } else {
        (allowed, Outcome::Ignored)
    };
    Ok(Reviewed {
        review: response.into_review(),
        outcome,
        subject,
    })
}

fn subject<T: kube::Resource>(request: &AdmissionRequest<T>, meta: Option<&ObjectMeta>) -> Subject {
    Subject {
        uid: request.uid.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: meta
            .and_then(|m| m.name.clone().or_else(|| m.generate_name.clone()))
            .unwrap_or_else(|| request.name.clone()),
    }
}

fn is_pod_create<T: kube::Resource>(request: &AdmissionRequest<T>) -> bool {
    request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && matches!(request.operation, Operation::Create)
}

fn respond_to_pod(
    request: &AdmissionRequest<Pod>,
    config: &InjectorConfig,
    ctx: &Context<'_>,
) -> (AdmissionResponse, Outcome) {
    let allowed = AdmissionResponse::from(request);
    let pod = match (&request.object, is_pod_create(request)) {
        (Some(pod), true) => pod,
        _ => return (allowed, Outcome::Ignored),
    };
    match mutate::decide_with(pod, config, ctx) {
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
/// of numbers (kube-rs #1781), three times larger and slow to encode.
pub fn encode(mut review: AdmissionReview<DynamicObject>) -> serde_json::Result<Vec<u8>> {
    use base64::Engine;
    let patch = review.response.as_mut().and_then(|r| r.patch.take());
    let mut value = serde_json::to_value(&review)?;
    if let (Some(patch), Some(response)) = (
        patch,
        value.get_mut("response").and_then(|r| r.as_object_mut()),
    ) {
        response.insert(
            "patch".to_owned(),
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch)),
        );
    }
    serde_json::to_vec(&value)
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}
