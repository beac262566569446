//! `--web.config.file` with real TLS: a CA, server and client certificates made here with
//! `openssl`, `curl` as the client. The right CA and password get in; a wrong CA, a wrong
//! password, plain HTTP, an old TLS version or a missing client certificate do not; probes stay
//! open. A client that never finishes its request headers is cut off.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::Server;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate it signs for `name` (server: localhost and 127.0.0.1).
fn pki(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}.pem"),
            ],
        );
    }
}

/// curl's exit code, HTTP status (000 when none) and headers.
fn curl(port: u16, path: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(args)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text[text.len().saturating_sub(3)..].to_string();
    (out.status.code().unwrap_or(-1), status, text)
}

fn start_tls(dir: &Path, web: &str, client: &[&str]) -> Server {
    let config = dir.join("web.yml");
    std::fs::write(&config, web).unwrap();
    let server =
        Server::start_listening(&["--demo", "--web.config.file", config.to_str().unwrap()]);
    // /readyz is open: wait on it over TLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(server.port, "/readyz", client).1 != "200" {
        assert!(
            Instant::now() < deadline,
            "{}",
            server.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

#[test]
fn tls_and_basic_auth_let_the_right_client_in_and_nobody_else() {
    let dir = common::scratch("web-tls");
    pki(&dir);
    let hash = bcrypt::hash("scrape-me", 6).unwrap();
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let server = start_tls(
        &dir,
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        ),
        &["--cacert", ca],
    );
    let other = dir.join("other-ca.pem");

    let (code, status, _) = curl(
        server.port,
        "/metrics",
        &["--cacert", ca, "-u", "prometheus:scrape-me"],
    );
    assert_eq!((code, status.as_str()), (0, "200"));
    let (_, status, headers) = curl(
        server.port,
        "/metrics",
        &["--cacert", ca, "-u", "prometheus:wrong"],
    );
    assert_eq!(status, "401");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm="),
        "{headers}"
    );
    let (_, status, _) = curl(server.port, "/", &["--cacert", ca]);
    assert_eq!(status, "401", "the landing page needs the password too");
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            curl(server.port, probe, &["--cacert", ca]).1,
            "200",
            "{probe} stays open"
        );
    }
    // A client that does not trust the server's CA stops at the handshake.
    let (code, status, _) = curl(
        server.port,
        "/metrics",
        &[
            "--cacert",
            other.to_str().unwrap(),
            "-u",
            "prometheus:scrape-me",
        ],
    );
    assert_ne!(code, 0);
    assert_eq!(status, "000");
    // TLS 1.2 is below min_version.
    let (code, _, _) = curl(
        server.port,
        "/healthz",
        &["--cacert", ca, "--tls-max", "1.2"],
    );
    assert_ne!(code, 0);
    // Plain HTTP gets no answer.
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(format!("http://127.0.0.1:{}/healthz", server.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");
    assert_ne!(plain.status.code(), Some(0));
    // The password never reaches the log.
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.contains("scrape-me") && !log.contains(&hash));
    server.terminate();
}

#[test]
fn client_certificates_are_required_when_configured() {
    let dir = common::scratch("web-mtls");
    pki(&dir);
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let with_cert = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    let server = start_tls(
        &dir,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        &with_cert,
    );
    let (code, status, _) = curl(server.port, "/metrics", &with_cert);
    assert_eq!((code, status.as_str()), (0, "200"));
    let (code, status, _) = curl(server.port, "/metrics", &["--cacert", &ca]);
    assert_ne!(code, 0, "no client certificate, no answer");
    assert_eq!(status, "000");
    // A certificate from another CA is refused too.
    let (code, _, _) = curl(
        server.port,
        "/metrics",
        &[
            "--cacert",
            &ca,
            "--cert",
            &path("other-ca.pem"),
            "--key",
            &path("other-ca.key"),
        ],
    );
    assert_ne!(code, 0);
    server.terminate();
}

#[test]
fn bad_web_config_files_stop_the_start_with_the_reason() {
    let dir = common::scratch("web-bad");
    let config = dir.join("web.yml");
    std::fs::write(&config, "basic_auth_users:\n  prometheus: plaintext\n").unwrap();
    let run = common::run([
        "serve",
        "--demo",
        "--web.config.file",
        config.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("basic_auth_users.prometheus"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("plaintext"), "the value is not echoed");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = Server::start(&["--demo"]);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
    server.terminate();
}

#[test]
fn scrapes_beyond_the_limit_get_503_until_one_finishes() {
    // A cluster big enough that its body outgrows the socket buffers: a scrape whose client
    // does not read keeps its slot.
    let dir = common::scratch("web-max-requests");
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: big\n");
    for i in 0..30_000 {
        yaml.push_str(&format!(
            "---\napiVersion: ec2.services.k8s.aws/v1alpha1\nkind: SecurityGroup\nmetadata:\n  name: sg-with-a-long-name-to-fill-the-body-{i}\n  namespace: big\nstatus:\n  ackResourceMetadata:\n    ownerAccountID: \"111111111111\"\n    region: eu-west-2\n  conditions:\n  - type: ACK.ResourceSynced\n    status: \"True\"\n    lastTransitionTime: \"2026-01-01T00:00:00Z\"\n"
        ));
    }
    std::fs::write(dir.join("cluster.yaml"), yaml).unwrap();
    let server = Server::start(&[
        "--kube-dir",
        dir.to_str().unwrap(),
        "--web.max-requests",
        "1",
    ]);
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // The slow scrape holds the only slot once its answer has begun: wait (bounded) for the
    // first bytes of it, without reading them.
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = [0u8; 12];
    let n = slow.peek(&mut head).expect("the slow scrape is answered");
    assert!(
        n > 0 && b"HTTP/1.1 200".starts_with(&head[..n]),
        "{:?}",
        &head[..n]
    );
    let busy = common::http::get(server.port, "/metrics", &[]).unwrap();
    assert_eq!(busy.status, 503);
    // Probes are not scrapes.
    assert_eq!(server.get("/healthz").status, 200);
    // Once the slow scrape is read to the end, the slot is free again.
    let mut body = Vec::new();
    slow.read_to_end(&mut body).unwrap();
    assert!(body.len() > 8 << 20, "body {} bytes", body.len());
    let again = common::http::get(server.port, "/metrics", &[]).unwrap();
    assert_eq!(again.status, 200);
    server.terminate();
}
