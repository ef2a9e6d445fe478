//! AWS references, one scheme per service:
//!
//! - Secrets Manager: `aws://<region>/<secret-id or ARN>[?version=<id>][&stage=<stage>][#<json-key>]`
//! - Parameter Store: `aws-ssm://<region>/<name or ARN>[?version=<n> | ?label=<label>][#<json-key>]`
//!
//! A Parameter Store name with a `/` is hierarchical, and SSM wants those
//! fully qualified: `aws-ssm://us-east-1/prod/db/password` names
//! `/prod/db/password`, `aws-ssm://us-east-1//top` names `/top`. An ARN picks
//! its service whichever scheme carries it, and its region must be the
//! reference's (the AWS CSI provider's rule).

use std::fmt;

use super::{ReferenceError, part, split_fragment};

pub(crate) const AWS_FORM: &str =
    "aws://<region>/<secret-id or ARN>[?version=<id>][&stage=<stage>][#<json-key>]";
pub(crate) const AWS_SSM_FORM: &str =
    "aws-ssm://<region>/<parameter name or ARN>[?version=<n> | ?label=<label>][#<json-key>]";

/// Which AWS service holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwsService {
    SecretsManager,
    ParameterStore,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsRef {
    pub region: String,
    pub service: AwsService,
    /// Secrets Manager: a secret name or ARN. Parameter Store: the parameter's
    /// name (hierarchical names start with `/`) or ARN.
    pub name: String,
    /// Secrets Manager `VersionId`; Parameter Store version number.
    pub version: Option<String>,
    /// Secrets Manager `VersionStage` (default `AWSCURRENT`); Parameter Store label.
    pub label: Option<String>,
    /// Write one top-level field of a JSON value instead of the whole value.
    pub json_key: Option<String>,
}

impl AwsRef {
    pub(crate) fn parse(rest: &str, service: AwsService) -> Result<Self, ReferenceError> {
        let form = match service {
            AwsService::SecretsManager => AWS_FORM,
            AwsService::ParameterStore => AWS_SSM_FORM,
        };
        let (location, json_key) = split_fragment(rest, "JSON key")?;
        let (path, query) = match location.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (location, None),
        };
        let (region, name) = path
            .split_once('/')
            .filter(|(_, name)| !name.is_empty())
            .ok_or(ReferenceError::Shape { form })?;
        check_region(region)?;
        let (service, name) = match arn_service(name) {
            Some(arn) => (check_arn(name, arn, region)?, name.to_owned()),
            None => (service, plain_name(name, service)?),
        };
        let mut r = Self {
            region: region.to_owned(),
            service,
            name,
            version: None,
            label: None,
            json_key,
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            r.set_selector(pair)?;
        }
        if r.service == AwsService::ParameterStore && r.version.is_some() && r.label.is_some() {
            return Err(part(
                "version selector",
                query.unwrap_or_default(),
                "Parameter Store takes a version or a label, not both",
            ));
        }
        Ok(r)
    }

    fn set_selector(&mut self, pair: &str) -> Result<(), ReferenceError> {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let label_key = match self.service {
            AwsService::SecretsManager => "stage",
            AwsService::ParameterStore => "label",
        };
        let slot = match key {
            "version" => &mut self.version,
            k if k == label_key => &mut self.label,
            _ => {
                return Err(part(
                    "query parameter",
                    pair,
                    match self.service {
                        AwsService::SecretsManager => {
                            "Secrets Manager accepts version=<version id> and stage=<staging label>"
                        }
                        AwsService::ParameterStore => {
                            "Parameter Store accepts version=<number> or label=<label>"
                        }
                    },
                ));
            }
        };
        if slot.is_some() {
            return Err(part(
                "query parameter",
                pair,
                "each selector may appear once",
            ));
        }
        check_selector(key, value, self.service)?;
        *slot = Some(value.to_owned());
        Ok(())
    }

    /// An object as the AWS CSI provider's SecretProviderClass names it:
    /// `service` is its `objectType` (`None` when an ARN says it), an ARN's
    /// region must be `region`, and the selectors follow the grammar's rules.
    pub fn from_class(
        region: &str,
        service: Option<AwsService>,
        name: &str,
        version: Option<&str>,
        label: Option<&str>,
    ) -> Result<Self, ReferenceError> {
        check_region(region)?;
        let (service, name) = match (arn_service(name), service) {
            (Some(arn), wanted) => {
                let found = check_arn(name, arn, region)?;
                if wanted.is_some_and(|w| w != found) {
                    return Err(part(
                        "ARN",
                        name,
                        "objectType must name the ARN's service (secretsmanager or ssmparameter)",
                    ));
                }
                (found, name.to_owned())
            }
            (None, Some(service)) => (service, plain_name(name, service)?),
            (None, None) => {
                return Err(part(
                    "object name",
                    name,
                    "objectType is needed unless objectName is a full ARN",
                ));
            }
        };
        let label_key = match service {
            AwsService::SecretsManager => "stage",
            AwsService::ParameterStore => "label",
        };
        if let Some(v) = version {
            check_selector("version", v, service)?;
        }
        if let Some(l) = label {
            check_selector(label_key, l, service)?;
        }
        if service == AwsService::ParameterStore && version.is_some() && label.is_some() {
            return Err(part(
                "version selector",
                &name,
                "Parameter Store takes objectVersion or objectVersionLabel, not both",
            ));
        }
        Ok(Self {
            region: region.to_owned(),
            service,
            name,
            version: version.map(str::to_owned),
            label: label.map(str::to_owned),
            json_key: None,
        })
    }

    /// The name the API is asked for, with Parameter Store's selector suffix
    /// (`name:3`, `name:prod`) as `GetParameters` takes it.
    pub fn ssm_selector_name(&self) -> String {
        match (&self.version, &self.label) {
            (Some(v), _) => format!("{}:{v}", self.name),
            (None, Some(l)) => format!("{}:{l}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

impl fmt::Display for AwsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let is_arn = self.name.starts_with("arn:");
        match self.service {
            AwsService::SecretsManager => write!(f, "aws://{}/{}", self.region, self.name)?,
            AwsService::ParameterStore if is_arn => {
                write!(f, "aws-ssm://{}/{}", self.region, self.name)?
            }
            AwsService::ParameterStore => {
                // `/prod/db` is written `prod/db`; `/top` keeps its slash.
                let shown = match self.name.strip_prefix('/') {
                    Some(rest) if rest.contains('/') => rest,
                    _ => &self.name,
                };
                write!(f, "aws-ssm://{}/{shown}", self.region)?
            }
        }
        let label_key = match self.service {
            AwsService::SecretsManager => "stage",
            AwsService::ParameterStore => "label",
        };
        let mut sep = '?';
        if let Some(v) = &self.version {
            write!(f, "{sep}version={v}")?;
            sep = '&';
        }
        if let Some(l) = &self.label {
            write!(f, "{sep}{label_key}={l}")?;
        }
        if let Some(key) = &self.json_key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

/// `us-east-1`, `us-gov-west-1`, `eu-isoe-west-1`: letters, then letter
/// groups, then a number.
pub fn check_region(s: &str) -> Result<(), ReferenceError> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(part(
            "AWS region",
            s,
            "a region looks like us-east-1 or eu-central-2",
        ))
    }
}

/// The service part of an ARN (`arn:<partition>:<service>:...`), if it is one.
fn arn_service(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("arn:")?;
    rest.split(':').nth(1)
}

/// `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>` or
/// `arn:<partition>:ssm:<region>:<account>:parameter/<name>`.
fn check_arn(s: &str, service: &str, region: &str) -> Result<AwsService, ReferenceError> {
    let fields: Vec<&str> = s.splitn(6, ':').collect();
    let (service, resource_ok) = match (service, fields.get(5)) {
        ("secretsmanager", Some(res)) => (
            AwsService::SecretsManager,
            res.strip_prefix("secret:").is_some_and(secret_name_ok),
        ),
        ("ssm", Some(res)) => (
            AwsService::ParameterStore,
            res.strip_prefix("parameter")
                .is_some_and(|n| n.starts_with('/') && parameter_name_ok(n)),
        ),
        _ => {
            return Err(part(
                "ARN",
                s,
                "an ARN names a secretsmanager secret or an ssm parameter",
            ));
        }
    };
    let account_ok = fields
        .get(4)
        .is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
    if fields.len() != 6 || !fields[1].starts_with("aws") || !account_ok || !resource_ok {
        return Err(part(
            "ARN",
            s,
            "arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name> or arn:aws:ssm:<region>:<account>:parameter/<name>",
        ));
    }
    if fields[3] != region {
        return Err(part(
            "ARN",
            s,
            "the ARN's region must be the reference's region",
        ));
    }
    Ok(service)
}

fn secret_name_ok(s: &str) -> bool {
    (1..=512).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

fn parameter_name_ok(s: &str) -> bool {
    (1..=2048).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
        && !s.contains("//")
        && !s.ends_with('/')
        && !s.split('/').any(|seg| seg == "." || seg == "..")
        && !s
            .trim_start_matches('/')
            .to_ascii_lowercase()
            .starts_with("aws")
        && !s
            .trim_start_matches('/')
            .to_ascii_lowercase()
            .starts_with("ssm")
}

fn plain_name(s: &str, service: AwsService) -> Result<String, ReferenceError> {
    match service {
        AwsService::SecretsManager if secret_name_ok(s) => Ok(s.to_owned()),
        AwsService::SecretsManager => Err(part(
            "secret id",
            s,
            "a Secrets Manager name has 1-512 letters, digits and /_+=.@-, or is a secretsmanager ARN",
        )),
        AwsService::ParameterStore => {
            let name = match s.strip_prefix('/') {
                Some(_) => s.to_owned(),
                None if s.contains('/') => format!("/{s}"),
                None => s.to_owned(),
            };
            if parameter_name_ok(&name) {
                Ok(name)
            } else {
                Err(part(
                    "parameter name",
                    s,
                    "a Parameter Store name has letters, digits and /_.- (no empty, '.' or '..' segments, not starting with aws or ssm), or is an ssm ARN",
                ))
            }
        }
    }
}

fn check_selector(key: &str, value: &str, service: AwsService) -> Result<(), ReferenceError> {
    let ok = match (service, key) {
        // A VersionId is 32-64 characters (a UUID in practice).
        (AwsService::SecretsManager, "version") => {
            (32..=64).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        (AwsService::ParameterStore, "version") => {
            !value.is_empty()
                && value.len() <= 19
                && value.bytes().all(|b| b.is_ascii_digit())
                && !value.starts_with('0')
        }
        // Staging labels and parameter labels: 1-256 / 1-100 of letters,
        // digits and . _ - (SSM labels may not start with a digit).
        (AwsService::SecretsManager, _) => {
            (1..=256).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        (AwsService::ParameterStore, _) => {
            (1..=100).contains(&value.len())
                && !value.starts_with(|c: char| c.is_ascii_digit())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
    };
    if ok {
        return Ok(());
    }
    Err(part(
        match key {
            "version" => "version",
            _ => "label",
        },
        value,
        match (service, key) {
            (AwsService::SecretsManager, "version") => {
                "a Secrets Manager version id is 32-64 letters, digits and hyphens"
            }
            (AwsService::ParameterStore, "version") => "a parameter version is a positive number",
            (AwsService::SecretsManager, _) => {
                "a staging label is 1-256 letters, digits and ._- (such as AWSCURRENT)"
            }
            (AwsService::ParameterStore, _) => {
                "a parameter label is 1-100 letters, digits and ._-, not starting with a digit"
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::SecretRef;

    fn aws(uri: &str) -> AwsRef {
        match uri.parse::<SecretRef>() {
            Ok(SecretRef::Aws(r)) => r,
            other => panic!("{uri}: {other:?}"),
        }
    }

    #[rstest]
    #[case("aws://us-east-1/prod/db")]
    #[case("aws://us-gov-west-1/prod/db#password")]
    #[case("aws://eu-central-1/arn:aws:secretsmanager:eu-central-1:123456789012:secret:db-AbCdEf")]
    #[case("aws://us-east-1/prod/db?stage=AWSPREVIOUS")]
    #[case(
        "aws://us-east-1/prod/db?version=01234567-89ab-cdef-0123-456789abcdef&stage=AWSCURRENT#k"
    )]
    #[case("aws-ssm://us-east-1/prod/db/password")]
    #[case("aws-ssm://us-east-1/plain-name?version=3")]
    #[case("aws-ssm://us-east-1//top?label=prod")]
    #[case("aws-ssm://us-east-1/arn:aws:ssm:us-east-1:123456789012:parameter/prod/db")]
    fn round_trips(#[case] uri: &str) {
        assert_eq!(aws(uri).to_string(), uri);
    }

    #[test]
    fn a_hierarchical_parameter_name_is_fully_qualified() {
        let r = aws("aws-ssm://us-east-1/prod/db/password?label=blue");
        assert_eq!(r.service, AwsService::ParameterStore);
        assert_eq!(r.name, "/prod/db/password");
        assert_eq!(r.ssm_selector_name(), "/prod/db/password:blue");
        assert_eq!(aws("aws-ssm://us-east-1//prod/db").name, "/prod/db");
        assert_eq!(aws("aws-ssm://us-east-1/flat").name, "flat");
    }

    #[test]
    fn an_arn_picks_its_service_in_either_scheme() {
        let r = aws("aws://us-east-1/arn:aws:ssm:us-east-1:123456789012:parameter/app/x");
        assert_eq!(r.service, AwsService::ParameterStore);
        assert_eq!(
            r.to_string(),
            "aws-ssm://us-east-1/arn:aws:ssm:us-east-1:123456789012:parameter/app/x"
        );
    }

    #[test]
    fn the_fragment_is_the_json_key() {
        let r = aws("aws://us-east-1/prod/db#user");
        assert_eq!(r.name, "prod/db");
        assert_eq!(r.json_key.as_deref(), Some("user"));
        assert_eq!(r.service, AwsService::SecretsManager);
    }

    #[rstest]
    #[case("aws://useast1/db", "AWS region \"useast1\"")]
    #[case("aws://us-east-1", "does not have the form aws://")]
    #[case("aws://us-east-1/", "does not have the form aws://")]
    #[case("aws://us-east-1/db#", "JSON key")]
    #[case(
        "aws://us-east-1/arn:aws:s3:::bucket",
        "an ARN names a secretsmanager secret"
    )]
    #[case(
        "aws://us-east-1/arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
        "the ARN's region must be the reference's"
    )]
    #[case("aws://us-east-1/db?label=x", "Secrets Manager accepts version")]
    #[case("aws://us-east-1/db?stage=a&stage=b", "once")]
    #[case("aws://us-east-1/db?version=short", "version id is 32-64")]
    #[case("aws://us-east-1/a b", "secret id \"a b\"")]
    #[case(
        "aws-ssm://us-east-1/db?version=1&label=x",
        "a version or a label, not both"
    )]
    #[case("aws-ssm://us-east-1/db?version=0", "positive number")]
    #[case("aws-ssm://us-east-1/db?label=1st", "not starting with a digit")]
    #[case("aws-ssm://us-east-1/a/../b", "parameter name")]
    #[case("aws-ssm://us-east-1/aws/reserved", "parameter name")]
    #[case("aws-ssm://us-east-1/db?stage=x", "Parameter Store accepts version")]
    fn rejects_with_a_reason(#[case] uri: &str, #[case] says: &str) {
        let err = uri.parse::<SecretRef>().unwrap_err().to_string();
        assert!(err.contains(says), "{uri}: {err}");
    }
}
