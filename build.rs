//! Records the git revision for `ack_drift_exporter_build_info` (`unknown` outside a checkout).

use std::process::Command;

fn main() {
    // A container build has no .git: it passes the revision in.
    if let Ok(r) = std::env::var("ACK_DRIFT_GIT_REVISION")
        && !r.is_empty()
    {
        println!("cargo:rustc-env=ACK_DRIFT_GIT_REVISION={r}");
        println!("cargo:rerun-if-env-changed=ACK_DRIFT_GIT_REVISION");
        return;
    }
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=ACK_DRIFT_GIT_REVISION={revision}");
    // A new commit moves HEAD or the branch it points to.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=ACK_DRIFT_GIT_REVISION");
}
