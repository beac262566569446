//! The server: the listening socket, the accept loop, TLS handshakes, connection limits and a
//! graceful shutdown on SIGTERM. Requests go to [`super::web::handle`].

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::ServeError;
use super::web::{self, AppState};

/// How long a client gets to send its request headers (and, with TLS, to finish the
/// handshake): a slow client cannot hold a connection open for nothing.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// `:9754` (every interface), `0.0.0.0:9754`, `127.0.0.1:9754`, `[::1]:9754`.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("--web.listen-address {s:?}: expected [HOST]:PORT, e.g. :9754"))
}

/// Binds the address; a failure (address in use, no permission) is a runtime failure.
pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Runtime(format!("--web.listen-address {addr}: {e}")))?;
    info!(address = %listener.local_addr().map_or(addr, |a| a), "listening");
    Ok(listener)
}

/// Accepts connections until SIGTERM or Ctrl-C, then gives open ones [`SHUTDOWN_GRACE`].
pub(super) async fn serve(listener: TcpListener, state: Arc<AppState>, tls: Option<TlsAcceptor>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let connection = accept(stream, state.clone(), graceful.watcher(), tls.clone());
                    tokio::spawn(connection);
                }
                Err(e) => warn!("accept: {e}"),
            },
            _ = &mut shutdown => break,
        }
    }
    info!("shutting down");
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("connections still open after {SHUTDOWN_GRACE:?}; closing"),
    }
}

/// Serves one connection, after its TLS handshake when TLS is on.
async fn accept(
    stream: TcpStream,
    state: Arc<AppState>,
    watcher: Watcher,
    tls: Option<TlsAcceptor>,
) {
    let Some(acceptor) = tls else {
        return serve_connection(stream, state, watcher).await;
    };
    // A client that does not finish the handshake in time is dropped.
    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => serve_connection(tls_stream, state, watcher).await,
        Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
        Err(_) => debug!("TLS handshake timed out"),
    }
}

async fn serve_connection<IO>(io: IO, state: Arc<AppState>, watcher: Watcher)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            TokioIo::new(io),
            service_fn(move |req| web::handle(state.clone(), req)),
        );
    let _ = watcher.watch(conn).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
