//! Exit codes and the human outputs of `audit` and `check-config`.

mod common;

fn seed() -> std::path::PathBuf {
    common::fixture("scenarios/seed-incident")
}

#[test]
fn audit_exit_codes() {
    let s = seed();
    // Drift: 1.
    let run = common::run(["audit", "--kube-dir", s.join("cluster").to_str().unwrap()]);
    assert_eq!(run.code, 1);
    // No drift: 0 (the formats fixture without its drifting SecurityGroup).
    let dir = common::scratch("cli-no-drift");
    std::fs::copy(
        common::fixture("kube/formats/list.json"),
        dir.join("ns.json"),
    )
    .unwrap();
    let run = common::run(["audit", "--kube-dir", dir.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    // Missing folder: 2.
    let run = common::run(["audit", "--kube-dir", "/nonexistent/dump"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("/nonexistent/dump"), "{}", run.stderr);
    // Unknown flag: 2.
    let run = common::run(["audit", "--kube-dri", "x"]);
    assert_eq!(run.code, 2);
}

#[test]
fn unknown_config_key_names_file_key_and_line() {
    let dir = common::scratch("cli-bad-config");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "controllers:\n  ec2:\n    runtime: legacy\n    enable_cram: true\n",
    )
    .unwrap();
    for cmd in ["audit", "check-config"] {
        let run = common::run([
            cmd,
            "--kube-dir",
            seed().join("cluster").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 2, "{cmd}");
        let want = format!("{}:4:", config.display());
        assert!(run.stderr.contains(&want), "{cmd}: {}", run.stderr);
        assert!(run.stderr.contains("enable_cram"), "{}", run.stderr);
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn table_output_shows_verdicts_and_remediation() {
    let s = seed();
    let run = common::run([
        "audit",
        "--kube-dir",
        s.join("cluster").to_str().unwrap(),
        "--config",
        s.join("config.yaml").to_str().unwrap(),
    ]);
    let out = &run.stdout;
    assert!(out.contains("1 in the wrong account"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("limit-amq-to-subnet-uat") && l.contains("ACCOUNT"))
        .expect("a row for the drifted SecurityGroup");
    assert!(line.contains("474417630776 (namespace)") && line.contains("calls_wrong_account"));
    assert!(out.contains(
        "kubectl annotate -n uat securitygroup.ec2.services.k8s.aws limit-amq-to-subnet-uat services.k8s.aws/deletion-policy=retain"
    ));
    assert!(out.contains("In AWS account 178394743802, region eu-west-2"));
    // Healthy resources get no remediation section.
    assert!(!out.contains("dev/SecurityGroup/limit-amq-to-subnet-dev:"));
}

#[test]
fn markdown_output_pastes_into_a_ticket() {
    let s = seed();
    let run = common::run([
        "audit",
        "--kube-dir",
        s.join("cluster").to_str().unwrap(),
        "--config",
        s.join("config.yaml").to_str().unwrap(),
        "--output",
        "markdown",
    ]);
    let out = &run.stdout;
    assert!(out.starts_with("## ACK drift audit"));
    assert!(out.contains("| NAMESPACE | KIND | NAME |"));
    assert!(out.contains("### `uat/SecurityGroup/limit-amq-to-subnet-uat`"));
    assert!(out.contains("`kubectl delete -n uat securitygroup.ec2.services.k8s.aws limit-amq-to-subnet-uat --wait=false`"));
    assert_eq!(run.code, 1);
}

#[test]
fn check_config_shows_discovered_and_overridden_settings() {
    let s = seed();
    let run = common::run([
        "check-config",
        "--kube-dir",
        s.join("cluster").to_str().unwrap(),
        "--config",
        s.join("config.yaml").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("valid"));
    assert!(out.contains("controller ec2 (ack-system/ack-ec2-controller)"));
    assert!(out.contains("178394743802 (from the Deployment)"), "{out}");
    assert!(out.contains("eu-west-2 (from the Deployment)"));
    assert!(out.contains("v0.35.0 (from the config: legacy)"), "{out}");
    assert!(out.contains("CARM               on"));
    assert!(out.contains("system namespace   ack-system"));
}

#[test]
fn check_config_on_the_demo_reads_env_gates_and_field_refs() {
    let demo = common::root().join("examples/demo");
    let run = common::run([
        "check-config",
        "--kube-dir",
        demo.join("cluster").to_str().unwrap(),
        "--config",
        demo.join("config.yaml").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0);
    let out = &run.stdout;
    assert!(
        out.contains("feature gates      ServiceLevelCARM=true"),
        "{out}"
    );
    assert!(
        out.contains("feature gates      TeamLevelCARM=true"),
        "{out}"
    );
    // Each runtime comes from the image, with its source.
    for row in [
        "runtime            v0.28.0 (from the image: ec2-controller 1.2.0)",
        "runtime            v0.62.0 (from the image: s3-controller 1.10.0)",
        "runtime            v0.52.0 (from the image: rds-controller 1.6.2)",
    ] {
        assert!(out.contains(row), "{row}\n{out}");
    }
    assert!(!out.contains("note:"), "{out}");
}

#[test]
fn check_config_warns_when_the_image_says_nothing_of_the_runtime() {
    let dir = common::scratch("cli-unknown-image");
    std::fs::write(
        dir.join("deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ack-ec2-controller, namespace: ack-system}\n\
         spec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: \
         registry.example/aws-controllers-k8s/ec2-controller@sha256:0123456789abcdef\n",
    )
    .unwrap();
    let run = common::run(["check-config", "--kube-dir", dir.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("v0.62.0 (default: the newest runtime known; set controllers.ec2.runtime)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("note: the ec2-controller image has no tag (digest only?): judged as the newest runtime known"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_storm_is_shown_next_to_the_verdict() {
    let demo = common::root().join("examples/demo");
    let args = |output: &str| {
        common::run([
            "audit",
            "--kube-dir",
            demo.join("cluster").to_str().unwrap(),
            "--config",
            demo.join("config.yaml").to_str().unwrap(),
            "--cloudtrail-dir",
            demo.join("cloudtrail").to_str().unwrap(),
            "--output",
            output,
        ])
    };
    let table = args("table").stdout;
    let row = table
        .lines()
        .find(|l| l.contains("amq-uat") && l.contains("calls_wrong_account"))
        .unwrap();
    assert!(row.trim_end().ends_with("30            30"), "{row}");
    assert!(table.contains(
        "CloudTrail: 30 x InvalidVpcID.NotFound in 178394743802/eu-west-2; 30 calls to account 178394743802 (expected 474417630776)."
    ));
    assert!(table.contains(
        "UNEXPECTED cross-account: 178394743802 -> 555566667777 sts:AssumeRole (assume_role) x 1"
    ));
    assert!(
        table.contains(
            "unattributed ACK SecurityGroup events in 178394743802/eu-west-2: no_match x 1"
        )
    );

    let md = args("markdown").stdout;
    assert!(md.contains("| ERROR EVENTS | WRONG-ACCOUNT CALLS |"));
    assert!(md.contains("**CloudTrail: 30 x InvalidVpcID.NotFound"));
    assert!(md.contains("### CloudTrail"));
}

#[test]
fn serve_exits_3_when_its_address_is_taken_and_2_when_it_is_malformed() {
    // Held open for the whole test: the exporter cannot bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = common::run(["serve", "--demo", "--web.listen-address", &addr]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("--web.listen-address {addr}")),
        "{}",
        run.stderr
    );
    let run = common::run(["serve", "--demo", "--web.listen-address", "nine-seven"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    drop(taken);
}
