//! What the benchmarks that run the binary share: building it, a plain HTTP GET over loopback
//! and the memory of a process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// GET with the Accept header Prometheus sends; returns the status and the body's bytes
/// (chunked transfer decoded).
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut body = Vec::new();
    let status = stream(port, path, |bytes| body.extend_from_slice(bytes))?;
    Ok((status, body))
}

/// GET, keeping only the body's length: what a timed scrape uses, so that it measures the
/// exporter, as `curl -o /dev/null` would, and not this client's buffer growth.
pub fn get_len(port: u16, path: &str) -> std::io::Result<(u16, usize)> {
    let mut len = 0;
    let status = stream(port, path, |bytes| len += bytes.len())?;
    Ok((status, len))
}

/// Sends the GET and hands the decoded body to `sink` piece by piece; returns the status.
fn stream(port: u16, path: &str, mut sink: impl FnMut(&[u8])) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        chunked |= name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked");
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut left = usize::MAX; // without chunking: until the connection closes
    loop {
        if chunked && left == usize::MAX {
            line.clear();
            r.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            left = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if left == 0 {
                return Ok(status);
            }
        }
        let n = r.read(&mut buf[..left.min(1 << 16)])?;
        if n == 0 {
            if chunked {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            return Ok(status);
        }
        sink(&buf[..n]);
        if chunked {
            left -= n;
            if left == 0 {
                r.read_line(&mut line)?; // the CRLF after the chunk
                left = usize::MAX;
            }
        }
    }
}

/// A `/proc/<pid>/status` memory figure (`VmRSS:`, `VmHWM:`) in MiB.
pub fn proc_mib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Builds the release binary (quietly; a no-op when up to date) and returns its path.
pub fn release_binary() -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("cargo")
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "ack-drift-exporter",
        ])
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the release build failed");
    root.join("target/release/ack-drift-exporter")
}

/// Starts `serve` with `args` on 127.0.0.1:`port` (warnings only on stderr).
pub fn serve(bin: &std::path::Path, args: &[&std::ffi::OsStr], port: u16) -> std::process::Child {
    std::process::Command::new(bin)
        .arg("serve")
        .args(args)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("the exporter starts")
}

/// Waits (10 minutes at most) until /readyz answers 200.
pub fn wait_ready(port: u16) {
    let started = std::time::Instant::now();
    while get(port, "/readyz").map_or(0, |r| r.0) != 200 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "not ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
