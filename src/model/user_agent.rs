//! The ACK controller user agent, as CloudTrail records it.
//!
//! ACK prefixes the AWS SDK's user agent with
//! `aws-controllers-k8s/<group>-<version> (GitCommit/..; BuildDate/..; CRDKind/<Kind>; CRDVersion/<v>[; ...])`
//! (older builds: `aws-controller-k8s/`). CloudTrail cuts `userAgent` at 1 KB, so a field
//! counts only when its `;` or `)` terminator survived.

use std::sync::LazyLock;

use memchr::memmem;

/// What an ACK user agent says about the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckUserAgent {
    /// API group of the controller, always in full (`ec2.services.k8s.aws`).
    pub group: String,
    pub controller_version: Option<String>,
    /// `CRDKind`, when present and not cut off.
    pub kind: Option<String>,
    pub crd_version: Option<String>,
}

const PREFIXES: [&str; 2] = ["aws-controllers-k8s/", "aws-controller-k8s/"];

/// What both prefixes start with: one search per user agent finds either (every record has
/// a user agent, few are ACK's).
static STEM: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("aws-controller"));

/// The first place either prefix starts, and which.
fn find_prefix(ua: &str) -> Option<(usize, &'static str)> {
    STEM.find_iter(ua.as_bytes()).find_map(|i| {
        PREFIXES
            .iter()
            .find(|p| ua[i..].starts_with(*p))
            .map(|p| (i, *p))
    })
}

/// Parses the ACK part of a user agent; `None` when the caller is not an ACK controller.
pub fn parse(ua: &str) -> Option<AckUserAgent> {
    let (start, prefix) = find_prefix(ua)?;
    let rest = &ua[start + prefix.len()..];
    let token_end = rest.find([' ', '(']).unwrap_or(rest.len());
    let token = &rest[..token_end];
    if token.is_empty() {
        return None;
    }
    let (group, version) = split_group_version(token);
    if group.is_empty()
        || !group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
    {
        return None;
    }
    // A token that runs to the end of a cut string may have lost part of its group.
    let terminated = token_end < rest.len();
    if !terminated && version.is_none() {
        return None;
    }
    let group = if !group.contains('.') {
        format!("{group}.services.k8s.aws")
    } else if group.ends_with(".services.k8s.aws") {
        group.to_string()
    } else {
        return None;
    };
    let mut out = AckUserAgent {
        group,
        controller_version: version.map(String::from),
        kind: None,
        crd_version: None,
    };
    // The comment in parentheses, possibly cut short.
    let after = rest[token_end..].trim_start();
    if let Some(comment) = after.strip_prefix('(') {
        let (body, closed) = match comment.find(')') {
            Some(i) => (&comment[..i], true),
            None => (comment, false),
        };
        let fields: Vec<&str> = body.split(';').collect();
        for (i, field) in fields.iter().enumerate() {
            // The last field of an unclosed comment may have been cut mid-value.
            let complete = closed || i + 1 < fields.len();
            if !complete {
                break;
            }
            let field = field.trim();
            if let Some(kind) = field.strip_prefix("CRDKind/") {
                out.kind = Some(kind.to_string()).filter(|k| is_kind(k));
            } else if let Some(v) = field.strip_prefix("CRDVersion/") {
                out.crd_version = Some(v.to_string()).filter(|v| !v.is_empty());
            }
        }
    }
    Some(out)
}

fn is_kind(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `ec2.services.k8s.aws-1.2.0` → (`ec2.services.k8s.aws`, `1.2.0`): the version starts at the
/// first `-` followed by a digit or `v<digit>`.
fn split_group_version(token: &str) -> (&str, Option<&str>) {
    let bytes = token.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'-' {
            continue;
        }
        let next = bytes.get(i + 1).copied();
        let after = bytes.get(i + 2).copied();
        let starts_version = matches!(next, Some(c) if c.is_ascii_digit())
            || (next == Some(b'v') && matches!(after, Some(c) if c.is_ascii_digit()));
        if starts_version {
            return (&token[..i], Some(&token[i + 1..]));
        }
    }
    match token.rsplit_once('-') {
        Some((g, v)) if !v.is_empty() => (g, Some(v)),
        _ => (token, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "aws-controllers-k8s/ec2.services.k8s.aws-1.2.0 (GitCommit/3ac4413514ef474d875bedd42725eebe2015d647; BuildDate/2024-01-04T11:50; CRDKind/SecurityGroup; CRDVersion/v1alpha1) aws-sdk-go/1.49.0 (go1.21.5; linux; amd64)";

    #[test]
    fn full_agent() {
        let ua = parse(SEED).unwrap();
        assert_eq!(ua.group, "ec2.services.k8s.aws");
        assert_eq!(ua.controller_version.as_deref(), Some("1.2.0"));
        assert_eq!(ua.kind.as_deref(), Some("SecurityGroup"));
        assert_eq!(ua.crd_version.as_deref(), Some("v1alpha1"));
    }

    #[test]
    fn old_singular_prefix_and_bare_service() {
        let ua = parse("aws-controller-k8s/s3-v0.1.5 (GitCommit/x; BuildDate/y; CRDKind/Bucket; CRDVersion/v1alpha1) aws-sdk-go/1.44")
            .unwrap();
        assert_eq!(ua.group, "s3.services.k8s.aws");
        assert_eq!(ua.controller_version.as_deref(), Some("v0.1.5"));
        assert_eq!(ua.kind.as_deref(), Some("Bucket"));
    }

    #[test]
    fn managed_by_and_prefix_elsewhere() {
        let ua = parse("exec-env/X aws-controllers-k8s/rds.services.k8s.aws-1.4.0 (GitCommit/a; BuildDate/b; CRDKind/DBInstance; CRDVersion/v1alpha1; ManagedBy/kro) sdk").unwrap();
        assert_eq!(ua.group, "rds.services.k8s.aws");
        assert_eq!(ua.kind.as_deref(), Some("DBInstance"));
    }

    #[test]
    fn truncation_mid_token_drops_the_cut_field() {
        let cut = &SEED[..SEED.find("CRDKind/").unwrap() + "CRDKind/Secu".len()];
        let ua = parse(cut).unwrap();
        assert_eq!(ua.group, "ec2.services.k8s.aws");
        assert_eq!(ua.kind, None);
        let cut = &SEED[..SEED.find("; CRDVersion").unwrap() + 3];
        assert_eq!(parse(cut).unwrap().kind.as_deref(), Some("SecurityGroup"));
        let cut = &SEED[..SEED.find("-1.2.0").unwrap() + 3];
        let ua = parse(cut).unwrap();
        assert_eq!(ua.controller_version.as_deref(), Some("1."));
        assert_eq!(ua.kind, None);
    }

    #[test]
    fn not_ack() {
        assert_eq!(parse("aws-cli/2.13.0 Python/3.11"), None);
        assert_eq!(
            parse("[Terraform/1.5.2 (+https://www.terraform.io) terraform-provider-aws/4.67.0]"),
            None
        );
        assert_eq!(parse("aws-controllers-k8s/"), None);
        assert_eq!(parse("aws-controllers-k8s/ec2.services.k8"), None);
        assert_eq!(parse("aws-controllers-k8s/ec2.example.com-1.0 (x)"), None);
        assert_eq!(parse(""), None);
    }
}
