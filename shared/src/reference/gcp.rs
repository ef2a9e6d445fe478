//! Google Secret Manager references:
//! `gcp://projects/<project>[/locations/<location>]/secrets/<secret>[/versions/<version>][#<json-key>]`.
//!
//! The version is a number, `latest` (the default: the most recently
//! created version, which the API refuses when it is disabled rather than
//! falling back) or an alias. With a location the secret is regional and
//! read at `secretmanager.<location>.rep.googleapis.com`, as the GCP CSI
//! provider does.

use std::fmt;

use super::{ReferenceError, part, split_fragment};

pub(crate) const GCP_FORM: &str = "gcp://projects/<project>[/locations/<location>]/secrets/<secret>[/versions/<version>][#<json-key>]";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GcpRef {
    /// A project id (`my-project`) or number.
    pub project: String,
    /// A region (`us-central1`) for a regional secret; `None`: global.
    pub location: Option<String>,
    pub secret: String,
    /// A version number, `latest` or an alias.
    pub version: String,
    /// Write one top-level field of a JSON value instead of the whole value.
    pub json_key: Option<String>,
}

impl GcpRef {
    pub(crate) fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let (path, json_key) = split_fragment(rest, "JSON key")?;
        let r = Self::from_resource_name(path)?;
        Ok(Self { json_key, ..r })
    }

    /// A resource name as the API and the GCP CSI provider write it:
    /// `projects/<p>[/locations/<l>]/secrets/<s>[/versions/<v>]`.
    pub fn from_resource_name(name: &str) -> Result<Self, ReferenceError> {
        let segments: Vec<&str> = name.split('/').collect();
        let (project, location, secret, version) = match segments.as_slice() {
            ["projects", p, "secrets", s] => (*p, None, *s, "latest"),
            ["projects", p, "secrets", s, "versions", v] => (*p, None, *s, *v),
            ["projects", p, "locations", l, "secrets", s] => (*p, Some(*l), *s, "latest"),
            ["projects", p, "locations", l, "secrets", s, "versions", v] => (*p, Some(*l), *s, *v),
            _ => return Err(ReferenceError::Shape { form: GCP_FORM }),
        };
        if !is_project(project) {
            return Err(part(
                "project",
                project,
                "a project id (6-30 lowercase letters, digits and hyphens, starting with a letter) or a project number",
            ));
        }
        if let Some(location) = location
            && !is_location(location)
        {
            return Err(part(
                "location",
                location,
                "a Google Cloud region such as us-central1 or europe-west4 (lowercase letters, digits and hyphens)",
            ));
        }
        if !is_secret_id(secret) {
            return Err(part(
                "secret",
                secret,
                "a secret id has 1-255 letters, digits, '_' and '-'",
            ));
        }
        if !is_version(version) {
            return Err(part(
                "version",
                version,
                "a version is a positive number, latest, or an alias (1-63 letters, digits, '_' and '-', starting with a letter)",
            ));
        }
        Ok(Self {
            project: project.to_owned(),
            location: location.map(str::to_owned),
            secret: secret.to_owned(),
            version: version.to_owned(),
            json_key: None,
        })
    }

    /// The version's resource name, as the API takes it.
    pub fn resource_name(&self) -> String {
        match &self.location {
            Some(l) => format!(
                "projects/{}/locations/{l}/secrets/{}/versions/{}",
                self.project, self.secret, self.version
            ),
            None => format!(
                "projects/{}/secrets/{}/versions/{}",
                self.project, self.secret, self.version
            ),
        }
    }

    /// The API host: global, or the location's regional endpoint.
    pub fn endpoint_host(&self) -> String {
        match &self.location {
            Some(l) => format!("secretmanager.{l}.rep.googleapis.com"),
            None => "secretmanager.googleapis.com".to_owned(),
        }
    }
}

fn is_project(p: &str) -> bool {
    let id = (6..=30).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && !p.ends_with('-')
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let number = (1..=20).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    id || number
}

fn is_location(l: &str) -> bool {
    (2..=63).contains(&l.len())
        && l.starts_with(|c: char| c.is_ascii_lowercase())
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_secret_id(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_version(v: &str) -> bool {
    let number =
        (1..=20).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0');
    let alias = (1..=63).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_alphabetic())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    number || alias
}

impl fmt::Display for GcpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gcp://{}", self.resource_name())?;
        if let Some(key) = &self.json_key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn gcp(s: &str) -> Result<GcpRef, ReferenceError> {
        GcpRef::parse(s.strip_prefix("gcp://").unwrap_or(s))
    }

    #[test]
    fn global_regional_versions_aliases_and_keys() {
        let r = gcp("gcp://projects/my-project/secrets/db").unwrap();
        assert_eq!(
            (r.version.as_str(), r.location.as_deref()),
            ("latest", None)
        );
        assert_eq!(r.endpoint_host(), "secretmanager.googleapis.com");
        let r = gcp("gcp://projects/123456789/locations/us-central1/secrets/db/versions/prod#user")
            .unwrap();
        assert_eq!(r.location.as_deref(), Some("us-central1"));
        assert_eq!(r.version, "prod");
        assert_eq!(r.json_key.as_deref(), Some("user"));
        assert_eq!(
            r.endpoint_host(),
            "secretmanager.us-central1.rep.googleapis.com"
        );
        assert_eq!(
            r.resource_name(),
            "projects/123456789/locations/us-central1/secrets/db/versions/prod"
        );
        assert_eq!(
            r.to_string(),
            "gcp://projects/123456789/locations/us-central1/secrets/db/versions/prod#user"
        );
        let n = gcp("gcp://projects/my-project/secrets/db/versions/3").unwrap();
        assert_eq!(n.version, "3");
    }

    #[rstest]
    #[case("gcp://projects/my-project/secret/db", "gcp://projects/<project>")]
    #[case("gcp://projects/ab/secrets/db", "project")]
    #[case("gcp://projects/my-project/secrets/d.b", "secret")]
    #[case("gcp://projects/my-project/secrets/db/versions/0", "version")]
    #[case("gcp://projects/my-project/secrets/db/versions/-x", "version")]
    #[case("gcp://projects/my-project/locations/US/secrets/db", "location")]
    #[case("gcp://projects/my-project/locations/us.evil/secrets/db", "location")]
    #[case("gcp://projects/my-project/secrets/db#", "JSON key")]
    fn refusals_name_the_part(#[case] s: &str, #[case] names: &str) {
        let e = gcp(s).unwrap_err().to_string();
        assert!(e.contains(names), "{s}: {e}");
    }
}
