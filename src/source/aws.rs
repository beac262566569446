//! What every AWS source shares: the SDK's standard configuration, assumed roles under one
//! session name, and how a failed request is named and handled.

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudtrail::config::Region;
use aws_sdk_cloudtrail::error::{ProvideErrorMetadata, SdkError};

/// The session name every assumed role carries, so CloudTrail in the read accounts shows
/// who is reading.
pub const SESSION_NAME: &str = "ack-drift-exporter";

/// The SDK's standard configuration: credential chain (IRSA, Pod Identity, env, profile),
/// region, and `AWS_ENDPOINT_URL*` endpoints from the environment.
pub async fn base_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// Credentials of `role_arn`, assumed with the base credentials under [`SESSION_NAME`] and
/// refreshed before they expire; `region` serves STS when the environment names none.
pub async fn assume_role(
    base: &SdkConfig,
    role_arn: &str,
    region: Option<&str>,
) -> SharedCredentialsProvider {
    let mut builder = AssumeRoleProvider::builder(role_arn).session_name(SESSION_NAME);
    if let (None, Some(r)) = (base.region(), region) {
        builder = builder.region(Region::new(r.to_string()));
    }
    SharedCredentialsProvider::new(builder.configure(base).build().await)
}

/// What a failed request calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Slow down and try again.
    Throttled,
    /// Server-side or network trouble: back off and try again.
    Transient,
    /// The credentials cannot read this (denied, role not assumable, unknown key).
    Denied,
    /// Anything else (a missing object, a bad request).
    Other,
}

/// The bounded error code for a metric label, and its class. Every SDK client's response
/// type is the same smithy `HttpResponse`, so one function serves them all.
pub fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, aws_sdk_cloudtrail::config::http::HttpResponse>,
) -> (String, ErrorClass) {
    // Credentials come first: a refused AssumeRole surfaces as a dispatch failure.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<CredentialsError>().is_some() {
            return ("AssumeRoleFailed".into(), ErrorClass::Denied);
        }
        source = s.source();
    }
    match e {
        SdkError::TimeoutError(_) => ("Timeout".into(), ErrorClass::Transient),
        SdkError::DispatchFailure(d) if d.is_timeout() => ("Timeout".into(), ErrorClass::Transient),
        SdkError::DispatchFailure(_) => ("ConnectionError".into(), ErrorClass::Transient),
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            (format!("HTTP{status}"), ErrorClass::Transient)
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().map(str::to_string);
            let class = service_error_class(code.as_deref(), status);
            (code.unwrap_or_else(|| format!("HTTP{status}")), class)
        }
        _ => ("ConstructionFailure".into(), ErrorClass::Other),
    }
}

fn service_error_class(code: Option<&str>, status: u16) -> ErrorClass {
    match code {
        Some(
            "ThrottlingException"
            | "Throttling"
            | "TooManyRequestsException"
            | "SlowDown"
            | "RequestThrottled",
        ) => ErrorClass::Throttled,
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "InvalidAccessKeyId"
            | "OptInRequired"
            | "KMS.AccessDeniedException",
        ) => ErrorClass::Denied,
        _ if status >= 500 => ErrorClass::Transient,
        _ => ErrorClass::Other,
    }
}

/// A request that failed: which operation, its bounded code and class, and the detail.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed ({code}): {detail}")]
pub struct RequestError {
    pub operation: &'static str,
    pub code: String,
    pub class: ErrorClass,
    pub detail: String,
}

impl RequestError {
    pub fn new<E: ProvideErrorMetadata + std::error::Error + 'static>(
        operation: &'static str,
        e: &SdkError<E, aws_sdk_cloudtrail::config::http::HttpResponse>,
    ) -> Self {
        let (code, class) = classify(e);
        RequestError {
            operation,
            code,
            class,
            detail: error_text(e),
        }
    }
}

/// The error and its causes in one line (the SDK's top-level message is often just
/// "service error").
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classed_by_code_then_status() {
        let cases = [
            (Some("ThrottlingException"), 400, ErrorClass::Throttled),
            (Some("SlowDown"), 503, ErrorClass::Throttled),
            (Some("AccessDenied"), 403, ErrorClass::Denied),
            (Some("KMS.AccessDeniedException"), 400, ErrorClass::Denied),
            (Some("InvalidClientTokenId"), 403, ErrorClass::Denied),
            (Some("NoSuchKey"), 404, ErrorClass::Other),
            (Some("InternalError"), 500, ErrorClass::Transient),
            (None, 502, ErrorClass::Transient),
            (None, 400, ErrorClass::Other),
        ];
        for (code, status, class) in cases {
            assert_eq!(
                service_error_class(code, status),
                class,
                "{code:?} {status}"
            );
        }
    }
}
