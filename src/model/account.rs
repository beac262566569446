//! AWS account ids and ARNs.

/// A 12-digit AWS account id, kept as the string AWS prints.
pub type AccountId = String;

/// True for exactly twelve ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The account field of an ARN (`arn:partition:service:region:account:resource`).
///
/// `None` when the string is no ARN or its account field is empty (S3 buckets,
/// `arn:aws:s3:::name`, carry no account).
pub fn arn_account(arn: &str) -> Option<AccountId> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    let _service = parts.next()?;
    let _region = parts.next()?;
    let account = parts.next()?;
    parts.next()?; // an ARN always has a resource part
    is_account_id(account).then(|| account.to_string())
}

/// The account field of an ARN as Go's `arn.Parse` (aws-sdk-go) reads it, which the ACK
/// runtime uses on role ARNs: `None` when it does not parse (no `arn:` prefix, fewer than six
/// `:`-separated sections); the field itself may be empty or no account id.
pub fn go_arn_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    (parts.len() == 6 && parts[0] == "arn").then(|| parts[4])
}

/// The region field of an ARN, if non-empty.
pub fn arn_region(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let region = parts.nth(2)?;
    (!region.is_empty()).then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_arn_parse() {
        let cases = [
            ("arn:aws:iam::474417630776:role/x", Some("474417630776")),
            ("arn:aws:iam:::role/x", Some("")),
            ("arn:aws:iam::474417630776", None),
            ("role/x", None),
            ("", None),
            ("aws:iam::1:role:x:y", None),
        ];
        for (arn, account) in cases {
            assert_eq!(go_arn_account(arn), account, "{arn}");
        }
    }

    #[test]
    fn arn_accounts() {
        assert_eq!(
            arn_account("arn:aws:iam::474417630776:role/ack-ec2-uat").as_deref(),
            Some("474417630776")
        );
        assert_eq!(
            arn_account("arn:aws:ec2:eu-west-2:178394743802:security-group/sg-1").as_deref(),
            Some("178394743802")
        );
        // S3 ARNs have no account.
        assert_eq!(arn_account("arn:aws:s3:::my-bucket"), None);
        assert_eq!(arn_account("arn:aws-cn:iam::12345:role/x"), None);
        assert_eq!(arn_account("not-an-arn"), None);
        assert_eq!(arn_account("arn:aws:iam::474417630776"), None);
        assert_eq!(
            arn_region("arn:aws:ec2:eu-west-2:178394743802:vpc/vpc-1").as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(arn_region("arn:aws:iam::178394743802:role/r"), None);
    }

    #[test]
    fn account_ids() {
        assert!(is_account_id("012345678901"));
        assert!(!is_account_id("12345678901"));
        assert!(!is_account_id("01234567890a"));
    }
}
