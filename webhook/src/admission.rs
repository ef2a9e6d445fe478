//! AdmissionReview in, AdmissionReview out: decode, decide, encode. The HTTP
//! layer only maps [`ReviewError`] to a status code.
//!
//! The decode is bounded by the body: the envelope is read with the object
//! left as raw JSON borrowed from the body (no copy, no `Value` tree); kind,
//! operation and namespace are checked first; opt-in is read from the raw
//! metadata; and only a pod whose answer depends on its content is decoded as
//! a typed `Pod`, after a count of its JSON objects and list items bounds
//! what that decode may allocate.

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt::Write as _,
    hash::BuildHasher,
    sync::{Arc, Mutex},
};

use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject, Status, TypeMeta,
    admission::{AdmissionResponse, AdmissionReview},
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::value::RawValue;
use shared::annotations::INJECT;

use crate::{
    accounts::{NoAccounts, ServiceAccounts},
    classes::{Context, NoClasses, ProviderClasses},
    config::InjectorConfig,
    mutate::{self, Decision, SkipReason},
};

/// The label (or annotation) that opts a pod in, with the value `"true"`.
pub const INJECT_LABEL: &str = INJECT;

/// At most this many JSON objects (`{`) in a pod that is decoded as a typed
/// `Pod`: each may become a struct of some hundred bytes (an env var with
/// its source). A large real pod (20 containers of 50 env vars, with
/// managedFields) has a few thousand.
pub const MAX_POD_OBJECTS: usize = 10_000;

/// At most this many volumes and containers (app, init and ephemeral) in a
/// pod that is decoded as a typed `Pod`: each is a struct of a few KiB.
pub const MAX_POD_VOLUMES_AND_CONTAINERS: usize = 1_000;

/// At most this many list items and map members (`,`) outside strings in a
/// pod that is decoded as a typed `Pod`.
pub const MAX_POD_ITEMS: usize = 100_000;

/// A request that is not a usable AdmissionReview: answered with 400. The
/// message says where, never what: serde's own text can quote values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {what} at line {line}, column {column}")]
    Malformed {
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

impl ReviewError {
    fn malformed(e: &serde_json::Error) -> Self {
        Self::Malformed {
            what: category(e),
            line: e.line(),
            column: e.column(),
        }
    }
}

fn category(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax => "invalid JSON",
        Category::Eof => "truncated JSON",
        Category::Data => "a missing field or a value of the wrong type",
        Category::Io => "unreadable input",
    }
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Injected,
    Skipped,
    Denied,
    /// Not a pod CREATE: allowed untouched.
    Ignored,
    /// A pod that did not opt in and does not decode as a Pod: allowed
    /// untouched, with a warning.
    Undecodable,
    /// An answer that needs the SecretProviderClass or ServiceAccount cache
    /// before both were listed: denied, so the apiserver's retry gets a right one.
    NotReady,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::Skipped => "skipped",
            Self::Denied => "denied",
            Self::Ignored => "ignored",
            Self::Undecodable => "undecodable",
            Self::NotReady => "not_ready",
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

impl Reviewed {
    /// The deny message, if the review was denied.
    pub fn denial(&self) -> Option<&str> {
        self.review
            .response
            .as_ref()
            .filter(|r| !r.allowed)
            .map(|r| r.result.message.as_str())
    }
}

pub fn review(body: &[u8], config: &InjectorConfig) -> Result<Reviewed, ReviewError> {
    review_with(body, config, &NoClasses, &NoAccounts, false)
}

/// The envelope, with the object left as raw JSON borrowed from the body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    request: Option<RawRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: Kind<'a>,
    #[serde(default, borrow)]
    operation: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    namespace: Option<Text<'a>>,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
}

/// A string borrowed from the body unless it has escapes (a bare
/// `Option<Cow<str>>` field would always copy).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A review with SecretProviderClasses to read and, when the webhook was
/// called for a CSI-compatible namespace, CSI volume conversion.
pub fn review_with(
    body: &[u8],
    config: &InjectorConfig,
    classes: &dyn ProviderClasses,
    accounts: &dyn ServiceAccounts,
    csi_compat: bool,
) -> Result<Reviewed, ReviewError> {
    review_cached(body, config, classes, accounts, csi_compat, None)
}

/// [`review_with`], answering a pod CREATE from `answers` when the same
/// object was answered before in the same namespace, on the same path, with
/// the same classes and ServiceAccounts (the mutation is a pure function of
/// those and the configuration); computed answers are added.
pub fn review_cached(
    body: &[u8],
    config: &InjectorConfig,
    classes: &dyn ProviderClasses,
    accounts: &dyn ServiceAccounts,
    csi_compat: bool,
    answers: Option<&Answers>,
) -> Result<Reviewed, ReviewError> {
    let envelope: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| ReviewError::malformed(&e))?;
    let request = envelope.request.ok_or(ReviewError::NoRequest)?;
    let types = TypeMeta {
        api_version: envelope.api_version.into_owned(),
        kind: envelope.kind.into_owned(),
    };
    let namespace = request.namespace.map(|n| n.0).filter(|n| !n.is_empty());
    let mut subject = Subject {
        uid: request.uid.clone().into_owned(),
        namespace: namespace.as_deref().unwrap_or_default().to_owned(),
        name: request.name.into_owned(),
    };
    let allowed = allowed(types, request.uid.into_owned());
    let is_pod_create = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.operation == "CREATE";
    let (response, outcome) = match (is_pod_create, request.object) {
        (true, Some(object)) => {
            let key = answers
                .zip(namespace.as_deref())
                .map(|(answers, namespace)| {
                    let key = AnswerKey {
                        namespace,
                        csi_compat,
                        generations: (classes.generation(), accounts.generation()),
                        object: object.get().as_bytes(),
                    };
                    (answers, key)
                });
            let cached = key.as_ref().and_then(|(answers, key)| answers.get(key));
            if let Some(answer) = cached {
                let mut response = answer.response.clone();
                response.types = allowed.types;
                response.uid = allowed.uid;
                if !answer.name.is_empty() {
                    subject.name.clone_from(&answer.name);
                }
                (response, answer.outcome)
            } else {
                let pods = Pods {
                    config,
                    classes,
                    accounts,
                    csi_compat,
                };
                let (response, outcome) =
                    pods.respond(allowed, object, namespace.as_deref(), &mut subject);
                if let Some((answers, key)) = &key {
                    answers.put(key, &response, outcome, &subject.name);
                }
                (response, outcome)
            }
        }
        _ => (allowed, Outcome::Ignored),
    };
    Ok(Reviewed {
        review: response.into_review(),
        outcome,
        subject,
    })
}

/// Recent answers to pod CREATEs, by their exact input. Pods a controller
/// creates in one burst are byte-identical (no name, uid or creation time
/// yet; managedFields' time has seconds), so a scale-up decides once.
/// Bounded: objects up to [`Answers::MAX_OBJECT_BYTES`], `capacity` entries,
/// an arbitrary one dropped when full.
pub struct Answers {
    capacity: usize,
    hasher: foldhash::fast::RandomState,
    entries: Mutex<HashMap<u64, Arc<Answer>>>,
}

struct AnswerKey<'a> {
    namespace: &'a str,
    csi_compat: bool,
    generations: (u64, u64),
    object: &'a [u8],
}

struct Answer {
    namespace: String,
    csi_compat: bool,
    generations: (u64, u64),
    object: Box<[u8]>,
    /// Without the request's uid and types, which each answer sets.
    response: AdmissionResponse,
    outcome: Outcome,
    name: String,
}

impl Answers {
    /// Larger objects are decided every time.
    pub const MAX_OBJECT_BYTES: usize = 64 * 1024;

    /// A cache of `capacity` answers; 0 keeps none.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hasher: foldhash::fast::RandomState::default(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn hash(&self, key: &AnswerKey<'_>) -> u64 {
        self.hasher
            .hash_one((key.namespace, key.csi_compat, key.generations, key.object))
    }

    fn get(&self, key: &AnswerKey<'_>) -> Option<Arc<Answer>> {
        if self.capacity == 0 || key.object.len() > Self::MAX_OBJECT_BYTES {
            return None;
        }
        let hash = self.hash(key);
        let entries = self.entries.lock().ok()?;
        // The hash only finds the entry; the whole input must match.
        entries
            .get(&hash)
            .filter(|a| {
                a.object.as_ref() == key.object
                    && a.namespace == key.namespace
                    && a.csi_compat == key.csi_compat
                    && a.generations == key.generations
            })
            .cloned()
    }

    fn put(&self, key: &AnswerKey<'_>, response: &AdmissionResponse, outcome: Outcome, name: &str) {
        // Not ready and undecodable answers are not the pod's final answer.
        let lasting = matches!(
            outcome,
            Outcome::Injected | Outcome::Skipped | Outcome::Denied
        );
        if self.capacity == 0 || !lasting || key.object.len() > Self::MAX_OBJECT_BYTES {
            return;
        }
        let mut response = response.clone();
        response.uid = String::new();
        let answer = Arc::new(Answer {
            namespace: key.namespace.to_owned(),
            csi_compat: key.csi_compat,
            generations: key.generations,
            object: key.object.into(),
            response,
            outcome,
            name: name.to_owned(),
        });
        let hash = self.hash(key);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity
            && !entries.contains_key(&hash)
            && let Some(evicted) = entries.keys().next().copied()
        {
            entries.remove(&evicted);
        }
        entries.insert(hash, answer);
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An allowed answer without a patch (kube-core keeps `patchType` private, so
/// this starts from its one public constructor).
fn allowed(types: TypeMeta, uid: String) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.types = types;
    response.uid = uid;
    response.allowed = true;
    response.result = Status::default();
    response
}

/// What a pod CREATE is answered from.
struct Pods<'a> {
    config: &'a InjectorConfig,
    classes: &'a dyn ProviderClasses,
    accounts: &'a dyn ServiceAccounts,
    csi_compat: bool,
}

impl Pods<'_> {
    fn respond(
        &self,
        allowed: AdmissionResponse,
        object: &RawValue,
        namespace: Option<&str>,
        subject: &mut Subject,
    ) -> (AdmissionResponse, Outcome) {
        // Class and ServiceAccount lookups read the request's namespace,
        // which the apiserver sets, never the object's, which the caller does.
        let Some(namespace) = namespace else {
            return (
                allowed.deny(
                    "secret-injector: the AdmissionReview request has no namespace; a pod CREATE is always in one, and classes and ServiceAccounts are read from it",
                ),
                Outcome::Denied,
            );
        };
        let raw = object.get();
        let Ok(probe) = serde_json::from_str::<Probe<'_>>(raw) else {
            return undecodable(allowed, "its metadata is not an object of string maps");
        };
        let meta = probe.metadata.unwrap_or_default();
        if let Some(name) = meta.name.or(meta.generate_name) {
            subject.name = name.0.into_owned();
        }
        let opted_in = meta.labels.0 == Flag::True || meta.annotations.0 == Flag::True;
        // A key with another value gets a warning from the decision; on the
        // CSI path any pod may carry a volume to convert.
        let inspect = opted_in
            || self.csi_compat
            || meta.labels.0 == Flag::Other
            || meta.annotations.0 == Flag::Other;
        if !inspect {
            return (allowed, Outcome::Skipped);
        }
        let shape = Shape::of(raw.as_bytes());
        let listed = probe.spec.map_or(0, |s| s.listed());
        if shape.objects > MAX_POD_OBJECTS
            || shape.items > MAX_POD_ITEMS
            || listed > MAX_POD_VOLUMES_AND_CONTAINERS
        {
            let why = format!(
                "it has {} JSON objects, {} list items or members and {listed} volumes and containers; this webhook decodes at most {MAX_POD_OBJECTS}, {MAX_POD_ITEMS} and {MAX_POD_VOLUMES_AND_CONTAINERS}",
                shape.objects, shape.items
            );
            return if opted_in {
                let message = format!("secret-injector: the pod is too large to inspect: {why}");
                (allowed.deny(message), Outcome::Denied)
            } else {
                undecodable(allowed, &why)
            };
        }
        let pod = match serde_json::from_str::<Pod>(raw) {
            Ok(pod) => pod,
            Err(e) => {
                let at = locate(raw, &e);
                return if opted_in {
                    let message = format!(
                        "secret-injector: the object is not a valid Pod: {} at {at}; no secrets were injected",
                        category(&e)
                    );
                    (allowed.deny(message), Outcome::Denied)
                } else {
                    undecodable(allowed, &format!("{} at {at}", category(&e)))
                };
            }
        };
        let ctx = Context {
            namespace,
            classes: self.classes,
            accounts: self.accounts,
            csi_compat: self.csi_compat,
        };
        let decision = mutate::decide_with(&pod, self.config, &ctx);
        let skipped = matches!(decision, Ok(Decision::Skip { .. }));
        let synced = self.classes.synced() && self.accounts.synced();
        if !skipped && !synced {
            // What was decided may rest on a class or ServiceAccount not
            // listed yet (a client id missing is not "none").
            let missing = match (self.classes.synced(), self.accounts.synced()) {
                (false, false) => "SecretProviderClasses and ServiceAccounts",
                (false, true) => "SecretProviderClasses",
                _ => "ServiceAccounts",
            };
            let message =
                format!("secret-injector: not ready: {missing} not synced yet; retry shortly");
            return (allowed.deny(message), Outcome::NotReady);
        }
        answer(allowed, decision)
    }
}

fn undecodable(allowed: AdmissionResponse, why: &str) -> (AdmissionResponse, Outcome) {
    let warning = format!(
        "secret-injector: the object does not decode as a Pod ({why}); it did not opt in and is admitted untouched"
    );
    (with_warnings(allowed, vec![warning]), Outcome::Undecodable)
}

fn answer(
    allowed: AdmissionResponse,
    decision: Result<Decision, mutate::MutationError>,
) -> (AdmissionResponse, Outcome) {
    match decision {
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

/// Where a typed decode failed: the field path (map keys only when they look
/// like names), line and column, never the value.
fn locate(raw: &str, first: &serde_json::Error) -> String {
    // Decode again, tracking the path: only on this error path.
    let mut de = serde_json::Deserializer::from_str(raw);
    let path = match serde_path_to_error::deserialize::<_, Pod>(&mut de) {
        Err(e) => render_path(e.path()),
        Ok(_) => String::new(),
    };
    let path = if path.is_empty() || path == "." {
        "the top level".to_owned()
    } else {
        path
    };
    format!("{path} (line {}, column {})", first.line(), first.column())
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let name_like = key.len() <= 63
                    && !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if name_like { key } else { "<key>" });
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// The pod's metadata as far as opt-in needs it, and how many of its
/// largest structs a typed decode would build.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(default, borrow)]
    metadata: Option<ProbeMeta<'a>>,
    #[serde(default)]
    spec: Option<SpecCounts>,
}

#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecCounts {
    #[serde(default)]
    volumes: Count,
    #[serde(default)]
    containers: Count,
    #[serde(default)]
    init_containers: Count,
    #[serde(default)]
    ephemeral_containers: Count,
}

impl SpecCounts {
    fn listed(self) -> usize {
        self.volumes.0 + self.containers.0 + self.init_containers.0 + self.ephemeral_containers.0
    }
}

/// The length of a list, read without building its items; anything else
/// counts 0 (the typed decode then says what is wrong, and where).
#[derive(Clone, Copy, Default)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor;
        impl<'de> Visitor<'de> for SeqVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(0))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        deserializer.deserialize_any(SeqVisitor)
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProbeMeta<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    generate_name: Option<Text<'a>>,
    #[serde(default)]
    labels: InjectKey,
    #[serde(default)]
    annotations: InjectKey,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Flag {
    #[default]
    Absent,
    True,
    Other,
}

/// The value of `secret-injector.io/inject` in a string map, read without
/// copying the map; the last of repeated keys wins, as in Go and serde.
#[derive(Default)]
struct InjectKey(Flag);

impl<'de> Deserialize<'de> for InjectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = InjectKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_unit<E>(self) -> Result<InjectKey, E> {
                Ok(InjectKey(Flag::Absent))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InjectKey, A::Error> {
                let mut flag = Flag::Absent;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0 == INJECT_LABEL {
                        let value = map.next_value::<Text<'de>>()?;
                        flag = if value.0 == "true" {
                            Flag::True
                        } else {
                            Flag::Other
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(InjectKey(flag))
            }
        }
        // `null` is an absent map.
        deserializer.deserialize_any(MapVisitor)
    }
}

/// JSON objects and list items or members of a JSON text, outside strings:
/// what bounds the structs and values its typed decode allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    objects: usize,
    items: usize,
}

impl Shape {
    fn of(json: &[u8]) -> Self {
        let (mut objects, mut items) = (0, 0);
        let mut rest = json;
        while let Some(i) = rest.iter().position(|&b| matches!(b, b'"' | b'{' | b',')) {
            match rest[i] {
                b'{' => objects += 1,
                b',' => items += 1,
                _ => {
                    // Skip the string: up to the next quote not escaped.
                    let mut j = i + 1;
                    while j < rest.len() {
                        match rest[j] {
                            b'\\' => j += 2,
                            b'"' => break,
                            _ => j += 1,
                        }
                    }
                    rest = rest.get(j + 1..).unwrap_or_default();
                    continue;
                }
            }
            rest = &rest[i + 1..];
        }
        Self { objects, items }
    }
}

/// Encodes a review for the wire with `response.patch` as base64, as the
/// apiserver's Go types expect for `[]byte`; kube-core would write a JSON array
/// of numbers (kube-rs #1781), three times larger and slow to encode.
pub fn encode(review: AdmissionReview<DynamicObject>) -> serde_json::Result<Vec<u8>> {
    use base64::Engine;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire<'a> {
        api_version: &'a str,
        kind: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<WireResponse<'a>>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct WireResponse<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
        audit_annotations: &'a std::collections::HashMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a Vec<String>>,
    }

    let response = review.response.as_ref().map(|r| {
        let patch = r
            .patch
            .as_deref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
        WireResponse {
            uid: &r.uid,
            allowed: r.allowed,
            status: &r.result,
            // Only `with_patch` sets a patch, always as a JSONPatch.
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &r.audit_annotations,
            warnings: r.warnings.as_ref(),
        }
    });
    serde_json::to_vec(&Wire {
        api_version: &review.types.api_version,
        kind: &review.types.kind,
        response,
    })
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_counts_outside_strings_only() {
        let json = br#"{"a":[1,2,{"b":"x,{\"y\",z"}],"c":"\\","d":{}}"#;
        assert_eq!(
            Shape::of(json),
            Shape {
                objects: 3,
                items: 4
            }
        );
        assert_eq!(
            Shape::of(b"\"unterminated"),
            Shape {
                objects: 0,
                items: 0
            }
        );
    }

    #[test]
    fn inject_key_last_value_wins_and_null_is_absent() {
        let probe = |json: &str| {
            serde_json::from_str::<Probe<'_>>(json)
                .unwrap()
                .metadata
                .unwrap_or_default()
                .annotations
                .0
        };
        let key = INJECT_LABEL;
        assert_eq!(
            probe(&format!(
                r#"{{"metadata":{{"annotations":{{"{key}":"true"}}}}}}"#
            )),
            Flag::True
        );
        assert_eq!(
            probe(&format!(
                r#"{{"metadata":{{"annotations":{{"{key}":"true","{key}":"no"}}}}}}"#
            )),
            Flag::Other
        );
        assert_eq!(probe(r#"{"metadata":{"annotations":null}}"#), Flag::Absent);
        // Escapes decode as in the typed decode.
        assert_eq!(
            probe(r#"{"metadata":{"annotations":{"secret-injector.io\/inject":"tru\u0065"}}}"#),
            Flag::True
        );
    }

    #[test]
    fn paths_name_fields_not_odd_keys() {
        let raw = r#"{"metadata":{"labels":{"ok-key":1}},"spec":{"containers":[]}}"#;
        let e = serde_json::from_str::<Pod>(raw).unwrap_err();
        assert_eq!(
            locate(raw, &e),
            format!("metadata.labels.ok-key (line 1, column {})", e.column())
        );
        let raw = r#"{"metadata":{"annotations":{"a b\n":1}}}"#;
        let e = serde_json::from_str::<Pod>(raw).unwrap_err();
        assert!(locate(raw, &e).starts_with("metadata.annotations.<key> "));
    }
}
