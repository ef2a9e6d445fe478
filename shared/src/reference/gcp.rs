//! Google Secret Manager references.

use std::fmt;

use super::{ReferenceError, part};

const GCP_FORM: &str = "gcp://projects/<project>/secrets/<secret>[/versions/<version>]";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GcpRef {
    pub project: String,
    pub secret: String,
    /// A version number or `latest`.
    pub version: String,
}

impl GcpRef {
    pub(crate) fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let segments: Vec<&str> = rest.split('/').collect();
        let (project, secret, version) = match segments.as_slice() {
            ["projects", p, "secrets", s] => (*p, *s, "latest"),
            ["projects", p, "secrets", s, "versions", v] => (*p, *s, *v),
            _ => return Err(ReferenceError::Shape { form: GCP_FORM }),
        };
        let project_id_ok = (6..=30).contains(&project.len())
            && project.starts_with(|c: char| c.is_ascii_lowercase())
            && !project.ends_with('-')
            && project
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let project_number_ok = !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit());
        if !(project_id_ok || project_number_ok) {
            return Err(part(
                "project",
                project,
                "a project id (6-30 lowercase letters, digits and hyphens, starting with a letter) or a project number",
            ));
        }
        if !((1..=255).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(part(
                "secret",
                secret,
                "a secret id has 1-255 letters, digits, '_' and '-'",
            ));
        }
        let version_ok = version == "latest"
            || (!version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit())
                && !version.starts_with('0'));
        if !version_ok {
            return Err(part(
                "version",
                version,
                "a version is a positive number or latest",
            ));
        }
        Ok(Self {
            project: project.to_owned(),
            secret: secret.to_owned(),
            version: version.to_owned(),
        })
    }
}

impl fmt::Display for GcpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gcp://projects/{}/secrets/{}/versions/{}",
            self.project, self.secret, self.version
        )
    }
}
