//! The SDK's errors as the seam's kinds: service error codes first (moto
//! answers a missing secret with 404 where AWS says 400, so the code decides,
//! not the status), then the status, then the chain's types for transport and
//! credential failures. Messages name the reference and the service's code,
//! never a value.

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::{client::result::SdkError, http::Response};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use shared::AwsRef;

use crate::providers::{
    Detail, FetchError,
    chain::{self, Transport},
};

/// Error codes of Secrets Manager, SSM and STS, by what they mean to a user.
fn by_code(code: &str, detail: Detail) -> Option<FetchError> {
    Some(match code {
        "ResourceNotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound" => {
            FetchError::NotFound(detail)
        }
        // A secret scheduled for deletion can still be restored.
        "InvalidRequestException" => FetchError::NotFound(detail),
        "AccessDeniedException"
        | "AccessDenied"
        | "DecryptionFailure"
        | "KMSAccessDeniedException" => FetchError::Forbidden(detail),
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidIdentityToken" => FetchError::Unauthorized(detail),
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "ThrottledException" => FetchError::Throttled {
            retry_after: None,
            detail,
        },
        "InternalServiceError"
        | "InternalServerError"
        | "InternalFailure"
        | "ServiceUnavailable" => FetchError::Unavailable(detail),
        "ValidationException" | "InvalidParameterException" | "InvalidKeyId" => {
            FetchError::Invalid(detail)
        }
        _ => return None,
    })
}

fn by_status(status: u16, detail: Detail) -> FetchError {
    match status {
        401 => FetchError::Unauthorized(detail),
        403 => FetchError::Forbidden(detail),
        404 => FetchError::NotFound(detail),
        429 => FetchError::Throttled {
            retry_after: None,
            detail,
        },
        s if s >= 500 => FetchError::Unavailable(detail),
        _ => FetchError::Invalid(detail),
    }
}

/// One operation's failure, for the object `r`.
pub fn classify<E>(e: &SdkError<E, Response>, r: &AwsRef) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let code = err.code().unwrap_or("unknown error");
            let message = err.message().unwrap_or_default();
            let detail = Detail::new(&format!("{r}: {code}: {message}"));
            let status = ctx.raw().status().as_u16();
            by_code(code, detail.clone()).unwrap_or_else(|| by_status(status, detail))
        }
        SdkError::TimeoutError(_) => {
            FetchError::Timeout(Detail::new(&format!("{r}: the request timed out")))
        }
        SdkError::ResponseError(_) => FetchError::Unavailable(Detail::new(&format!(
            "{r}: the reply could not be read: {}",
            chain::describe(e)
        ))),
        _ => credential_or_transport(e, r),
    }
}

/// Dispatch and construction failures: a credential that could not be had
/// (and why, when its cause was the network), else the transport's kind.
fn credential_or_transport(e: &(dyn std::error::Error + 'static), r: &AwsRef) -> FetchError {
    let detail = Detail::new(&format!("{r}: {}", chain::describe(e)));
    let credential = chain::causes(e).find_map(|c| c.downcast_ref::<CredentialsError>());
    match (credential, Transport::of(e)) {
        (Some(_), Transport::Connection) => FetchError::Credential(detail),
        (_, kind) => kind.error(detail),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("ResourceNotFoundException", 404, "not_found")]
    #[case("ResourceNotFoundException", 400, "not_found")]
    #[case("ParameterVersionNotFound", 400, "not_found")]
    #[case("AccessDeniedException", 400, "forbidden")]
    #[case("ThrottlingException", 400, "throttled")]
    #[case("ExpiredTokenException", 400, "unauthorized")]
    #[case("SomethingNew", 503, "unavailable")]
    #[case("SomethingNew", 400, "invalid")]
    fn codes_win_over_statuses(#[case] code: &str, #[case] status: u16, #[case] label: &str) {
        let detail = Detail::new("x");
        let err = by_code(code, detail.clone()).unwrap_or_else(|| by_status(status, detail));
        assert_eq!(err.label(), label, "{code} {status}");
    }

    #[test]
    fn a_credential_failure_is_credential_unless_the_network_says_more() {
        let r: AwsRef = match "aws://us-east-1/db".parse() {
            Ok(shared::SecretRef::Aws(r)) => r,
            other => panic!("{other:?}"),
        };
        let plain = CredentialsError::not_loaded("no web identity token");
        assert_eq!(credential_or_transport(&plain, &r).label(), "credential");
        let dns = CredentialsError::provider_error(chain::DnsFailed {
            name: "sts.us-east-1.amazonaws.com".into(),
            reason: "no such host".into(),
        });
        let err = credential_or_transport(&dns, &r);
        assert_eq!(err.label(), "dns");
        assert!(err.to_string().contains("aws://us-east-1/db"), "{err}");
    }
}
