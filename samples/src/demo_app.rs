//! The demo service: `GET /` (any path) answers a JSON greeting that echoes the method, the
//! path and the proxy-added headers it received; `GET /slow?ms=N` answers after N ms, to show
//! the proxy's route timeout.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

/// Where the demo app listens unless told otherwise; `samples/sidecar-demo.yaml` points its
/// cluster here.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:18080";

/// Longest delay `/slow` accepts: every wait the demo can be asked for stays bounded.
pub const MAX_SLOW_MS: u64 = 60_000;

/// Accept connections until the listener fails, serving each on its own task.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            // A client that goes away mid-request is not the app's problem; nothing to report.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

/// Resolves on SIGINT or SIGTERM, so the demo script can stop the app cleanly.
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

/// Answer one request. The body is never read: the answer depends on the head only.
pub async fn handle<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/slow" {
        return Ok(slow(req.method(), req.uri().query()).await);
    }
    Ok(json_response(StatusCode::OK, &greeting(&req)))
}

fn greeting<B>(req: &Request<B>) -> serde_json::Value {
    let header = |headers: &HeaderMap, name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    json!({
        "greeting": "hello from demo-app",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "x_request_id": header(req.headers(), "x-request-id"),
        "x_forwarded_for": header(req.headers(), "x-forwarded-for"),
    })
}

async fn slow(method: &Method, query: Option<&str>) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "/slow answers GET only" }),
        );
    }
    let ms = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("ms="))
        .and_then(|v| v.parse::<u64>().ok());
    match ms {
        Some(ms) if ms <= MAX_SLOW_MS => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json_response(StatusCode::OK, &json!({ "slept_ms": ms }))
        }
        _ => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("use /slow?ms=N with N from 0 to {MAX_SLOW_MS}") }),
        ),
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn call(req: Request<()>) -> (StatusCode, serde_json::Value) {
        let resp = handle(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn greeting_echoes_method_path_and_proxy_headers() {
        let req = Request::post("/orders/7?x=1")
            .header("x-request-id", "abc-123")
            .header("x-forwarded-for", "10.1.2.3")
            .body(())
            .unwrap();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["method"], "POST");
        assert_eq!(body["path"], "/orders/7");
        assert_eq!(body["x_request_id"], "abc-123");
        assert_eq!(body["x_forwarded_for"], "10.1.2.3");
    }

    #[tokio::test]
    async fn greeting_shows_absent_headers_as_null() {
        let (_, body) = call(Request::get("/").body(()).unwrap()).await;
        assert!(body["x_request_id"].is_null());
        assert!(body["x_forwarded_for"].is_null());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_waits_the_asked_time() {
        let start = tokio::time::Instant::now();
        let (status, body) = call(Request::get("/slow?ms=1500").body(()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["slept_ms"], 1500);
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn slow_rejects_missing_or_unbounded_delays() {
        for uri in ["/slow", "/slow?ms=abc", "/slow?ms=60001"] {
            let (status, _) = call(Request::get(uri).body(()).unwrap()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        }
    }

    /// The real server, over a socket: HTTP/1.1 and h2c prior knowledge both answer.
    #[tokio::test]
    async fn serves_http1_and_h2c_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener));

        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get("/h1")
            .header(header::HOST, "demo")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = h1.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(r#""path":"/h1""#));

        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("http://{addr}/h2"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);

        server.abort();
    }
}
