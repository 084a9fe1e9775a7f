//! What every sample service shares: the accept loop (HTTP/1.1 and h2c on one port), JSON
//! answers, and the stop signal, so each service file holds only its own behaviour.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Largest request body a sample service reads; anything bigger is a client mistake.
pub const MAX_BODY: usize = 64 * 1024;

/// Answer type of every sample handler.
pub type Reply = Response<Full<Bytes>>;

/// Accept connections until the listener fails, serving each on its own task with `handler`,
/// which also gets the client's address (the legacy service logs it).
pub async fn serve<H, F>(listener: TcpListener, handler: H) -> std::io::Result<()>
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    loop {
        let (stream, peer) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let fut = handler(peer, req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            // A client that goes away mid-request is not the service's problem.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Resolves on SIGINT or SIGTERM, so the demo script can stop a service cleanly.
pub async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// A JSON answer ending in a newline, so `curl` output reads well in a terminal.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Reply {
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Read a request body of at most [`MAX_BODY`] bytes, within `deadline`.
pub async fn read_body<B>(body: B, deadline: Duration) -> Result<Bytes, String>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(deadline, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err(format!("cannot read the body: {e}")),
        Err(_) => Err(format!("the body did not arrive within {deadline:?}")),
    }
}

/// The value of query parameter `name`, percent-decoding left out: the samples only pass
/// plain words.
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A header as text, for echoing in answers.
pub fn header_text(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_finds_plain_words() {
        assert_eq!(query_param(Some("a=1&city=oslo"), "city"), Some("oslo"));
        assert_eq!(query_param(Some("city"), "city"), None);
        assert_eq!(query_param(None, "city"), None);
    }
}
