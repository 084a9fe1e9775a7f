//! `sidecar status` and `sidecar tap`: readable tables from a running sidecar's admin API,
//! what `istioctl proxy-config` gives Istio users.
//!
//! Both are plain HTTP/1.1 clients of the admin endpoints (`/listeners`, `/config_dump`,
//! `/clusters`, `/debug/failures`, `/tap`); `-o json` prints what the admin API answered.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// What `sidecar status` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    Listeners,
    Routes,
    Clusters,
    Failures,
}

/// Output format of the inspection commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot reach the admin API at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the admin API answered {status} for {path}: {body}")]
    Status {
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("the admin API sent invalid JSON for {path}: {reason}")]
    Json { path: String, reason: String },
}

/// The `/tap` query a `sidecar tap` command line asks for.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TapArgs {
    /// Only requests on this listener.
    #[arg(long)]
    pub listener: Option<String>,
    /// Only requests matched by this route.
    #[arg(long)]
    pub route: Option<String>,
    /// Only requests sent to this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only this status class (`5xx`) or status (`503`).
    #[arg(long)]
    pub status: Option<String>,
    /// Only paths starting with this.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Stop after this many requests.
    #[arg(long, short = 'n')]
    pub limit: Option<u64>,
    /// Show request header values (those carrying credentials stay redacted).
    #[arg(long)]
    pub headers: bool,
}

impl TapArgs {
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("listener", &self.listener),
            ("route", &self.route),
            ("cluster", &self.cluster),
            ("status", &self.status),
            ("prefix", &self.prefix),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        if let Some(n) = self.limit {
            q.append_pair("limit", &n.to_string());
        }
        if self.headers {
            q.append_pair("headers", "true");
        }
        q.finish()
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn get(
    admin: &str,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, InspectError> {
    let unreachable = |reason: String| InspectError::Unreachable {
        addr: admin.to_owned(),
        reason,
    };
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(admin))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, admin)
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        return Err(InspectError::Status {
            path: path.to_owned(),
            status,
            body,
        });
    }
    Ok(resp)
}

async fn get_json(admin: &str, path: &str) -> Result<Value, InspectError> {
    let body = get(admin, path)
        .await?
        .into_body()
        .collect()
        .await
        .map_err(|e| InspectError::Unreachable {
            addr: admin.to_owned(),
            reason: e.to_string(),
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| InspectError::Json {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// `sidecar status VIEW`: print the view; the error says what went wrong.
pub fn status(admin: &str, view: View, output: Output) -> Result<String, InspectError> {
    let rt = runtime().map_err(|e| InspectError::Unreachable {
        addr: admin.to_owned(),
        reason: e.to_string(),
    })?;
    rt.block_on(async {
        let path = match view {
            View::Listeners => "/listeners",
            View::Routes => "/config_dump",
            View::Clusters => "/clusters",
            View::Failures => "/debug/failures",
        };
        let doc = get_json(admin, path).await?;
        Ok(match output {
            Output::Json => {
                let shown = match view {
                    View::Routes => routes_json(&doc),
                    _ => doc,
                };
                let mut s = serde_json::to_string_pretty(&shown).unwrap_or_default();
                s.push('\n');
                s
            }
            Output::Table => match view {
                View::Listeners => listeners_table(&doc),
                View::Routes => routes_table(&doc),
                View::Clusters => clusters_table(&doc),
                View::Failures => failures_table(&doc),
            },
        })
    })
}

/// `sidecar tap`: print requests as they pass until the limit or Ctrl-C.
pub fn tap(admin: &str, args: &TapArgs, output: Output) -> Result<(), InspectError> {
    use std::io::Write;
    let rt = runtime().map_err(|e| InspectError::Unreachable {
        addr: admin.to_owned(),
        reason: e.to_string(),
    })?;
    rt.block_on(async {
        let query = args.query();
        let path = if query.is_empty() {
            "/tap".to_owned()
        } else {
            format!("/tap?{query}")
        };
        let mut body = get(admin, &path).await?.into_body();
        let mut out = std::io::stdout().lock();
        if output == Output::Table {
            let _ = writeln!(out, "{}", tap_header());
        }
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                let shown = match output {
                    Output::Json => text.to_owned(),
                    Output::Table => match serde_json::from_str::<Value>(text) {
                        Ok(v) => tap_row(&v),
                        Err(_) => text.to_owned(),
                    },
                };
                // A closed pipe (`| head`) ends the command quietly.
                if writeln!(out, "{shown}").and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ms(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |m| format!("{m:.3}ms"))
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn listeners_table(doc: &Value) -> String {
    let rows: Vec<Vec<String>> = list(doc, "listeners")
        .iter()
        .map(|l| {
            let target = match l.get("cluster") {
                Some(c) => format!("cluster {}", s(c)),
                None => {
                    let routes: Vec<String> = list(l, "routes").iter().map(s).collect();
                    format!("routes {}", routes.join(","))
                }
            };
            vec![s(&l["name"]), s(&l["address"]), s(&l["protocol"]), target]
        })
        .collect();
    table(&["NAME", "ADDRESS", "PROTOCOL", "TO"], &rows)
}

/// The routes of every HTTP listener, from `/config_dump`.
fn routes_json(dump: &Value) -> Value {
    let routes: Vec<Value> = list(dump, "listeners")
        .iter()
        .flat_map(|l| {
            list(l, "routes").into_iter().map(move |mut r| {
                if let Some(o) = r.as_object_mut() {
                    o.insert("listener".into(), l["name"].clone());
                }
                r
            })
        })
        .collect();
    serde_json::json!({ "routes": routes })
}

fn routes_table(dump: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&routes_json(dump), "routes")
        .iter()
        .map(|r| {
            let m = &r["match"];
            let mut cond = Vec::new();
            let hosts: Vec<String> = list(m, "hosts").iter().map(s).collect();
            if !hosts.is_empty() {
                cond.push(format!("host={}", hosts.join("|")));
            }
            for (k, label) in [("prefix", "prefix"), ("path", "path"), ("regex", "regex")] {
                if let Some(v) = m.get(k) {
                    cond.push(format!("{label}={}", s(v)));
                }
            }
            for h in list(m, "headers") {
                cond.push(format!("header:{}", s(&h["name"])));
            }
            if cond.is_empty() {
                cond.push("*".into());
            }
            let to = match r.get("cluster") {
                Some(c) => s(c),
                None => list(r, "weighted_clusters")
                    .iter()
                    .map(|w| format!("{}={}", s(&w["name"]), s(&w["weight"])))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let retries = r.get("retry_policy").map_or("-".into(), |p| {
                let on: Vec<String> = list(p, "retry_on").iter().map(s).collect();
                format!("{}x {}", s(&p["num_retries"]), on.join(","))
            });
            vec![
                s(&r["listener"]),
                s(&r["name"]),
                cond.join(" "),
                to,
                s(&r["timeout"]),
                retries,
            ]
        })
        .collect();
    table(
        &[
            "LISTENER", "ROUTE", "MATCH", "CLUSTER", "TIMEOUT", "RETRIES",
        ],
        &rows,
    )
}

fn clusters_table(doc: &Value) -> String {
    let mut rows = Vec::new();
    for c in list(doc, "clusters") {
        let breaker = c
            .get("error_rate_breaker")
            .map_or("-".into(), |b| s(&b["state"]));
        for e in list(&c, "endpoints") {
            let health = match (e["healthy"].as_bool(), e.get("ejected_until")) {
                (_, Some(Value::String(_))) => "ejected".to_owned(),
                (Some(true), _) => "healthy".to_owned(),
                _ => "unhealthy".to_owned(),
            };
            rows.push(vec![
                s(&c["name"]),
                s(&c["lb_policy"]),
                s(&e["address"]),
                s(&e["weight"]),
                health,
                s(&e["active_requests"]),
                s(&e["requests_total"]),
                s(&e["connect_failures_total"]),
                breaker.clone(),
            ]);
        }
    }
    table(
        &[
            "CLUSTER",
            "LB",
            "ENDPOINT",
            "WEIGHT",
            "HEALTH",
            "ACTIVE",
            "REQUESTS",
            "CONNECT_FAILURES",
            "BREAKER",
        ],
        &rows,
    )
}

/// The reason chain of a failed request: each attempt, what it got, and why it was retried.
fn chain(e: &Value) -> String {
    let mut parts: Vec<String> = list(e, "attempts")
        .iter()
        .map(|a| {
            let got = match a.get("status") {
                Some(st) => s(st),
                None => s(&a["reason"]),
            };
            let mut p = format!("{} {got}", s(&a["endpoint"]));
            if let Some(r) = a.get("retried_on") {
                let _ = write!(p, " -> retry({})", s(r));
            }
            p
        })
        .collect();
    if let Some(r) = e.get("reason") {
        parts.push(format!("reply {}", s(r)));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn failures_table(doc: &Value) -> String {
    let rows: Vec<Vec<String>> = list(doc, "failures")
        .iter()
        .map(|f| {
            vec![
                s(&f["time"]),
                s(&f["status"]),
                s(&f["method"]),
                s(&f["path"]),
                s(f.get("route").unwrap_or(&Value::Null)),
                s(f.get("cluster").unwrap_or(&Value::Null)),
                chain(f),
                s(f.get("error").unwrap_or(&Value::Null)),
            ]
        })
        .collect();
    let mut out = format!(
        "{} failure(s) in all, {} kept, newest first\n",
        s(&doc["failures_total"]),
        s(&doc["kept"])
    );
    out.push_str(&table(
        &[
            "TIME", "STATUS", "METHOD", "PATH", "ROUTE", "CLUSTER", "CHAIN", "ERROR",
        ],
        &rows,
    ));
    out
}

const TAP_COLUMNS: [(&str, usize); 12] = [
    ("TIME", 24),
    ("STATUS", 6),
    ("METHOD", 6),
    ("PATH", 24),
    ("ROUTE", 12),
    ("CLUSTER", 12),
    ("UPSTREAM", 21),
    ("TOTAL", 10),
    ("IN_PROXY", 10),
    ("CONNECT", 10),
    ("UP_HEADERS", 10),
    ("RETRIES/BYTES/REASON", 0),
];

fn tap_header() -> String {
    let cells: Vec<String> = TAP_COLUMNS.iter().map(|(h, _)| (*h).to_owned()).collect();
    tap_line(&cells)
}

fn tap_line(cells: &[String]) -> String {
    let mut l = String::new();
    for (c, (_, w)) in cells.iter().zip(TAP_COLUMNS) {
        let _ = write!(l, "{c:<w$} ");
    }
    l.trim_end().to_owned()
}

/// One tapped request as a table row (a `{"dropped": N}` line as a note).
pub fn tap_row(e: &Value) -> String {
    if let Some(n) = e.get("dropped") {
        return format!(
            "... {} request(s) not shown: this terminal read too slowly",
            s(n)
        );
    }
    let attempts = list(e, "attempts");
    let last = attempts.last();
    let connect = attempts
        .iter()
        .filter_map(|a| a.get("connect_ms").and_then(Value::as_f64))
        .reduce(|a, b| a + b);
    let mut tail = format!(
        "{} {}B/{}B",
        s(&e["retries"]),
        s(e.get("bytes_received").unwrap_or(&Value::Null)),
        s(&e["bytes_sent"])
    );
    if let Some(r) = e.get("reason") {
        let _ = write!(tail, " {}", s(r));
    }
    if attempts.len() > 1 {
        let _ = write!(tail, " [{}]", chain(e));
    }
    let mut path = s(&e["path"]);
    if path.chars().count() > 24 {
        path = path.chars().take(23).collect::<String>() + "…";
    }
    tap_line(&[
        s(&e["time"]),
        s(&e["status"]),
        s(&e["method"]),
        path,
        s(e.get("route").unwrap_or(&Value::Null)),
        s(e.get("cluster").unwrap_or(&Value::Null)),
        s(e.get("upstream").unwrap_or(&Value::Null)),
        ms(&e["duration_ms"]),
        ms(e.get("before_upstream_ms").unwrap_or(&Value::Null)),
        connect.map_or("-".into(), |c| format!("{c:.3}ms")),
        last.map_or("-".into(), |a| {
            ms(a.get("response_headers_ms").unwrap_or(&Value::Null))
        }),
        tail,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listener_table_aligns_columns() {
        let t = listeners_table(&json!({"listeners": [
            {"name": "in", "address": "127.0.0.1:1", "protocol": "auto", "routes": ["a", "b"]},
            {"name": "raw-tcp", "address": "127.0.0.1:22", "protocol": "tcp", "routes": [], "cluster": "db"},
        ]}));
        assert_eq!(
            t,
            "NAME     ADDRESS       PROTOCOL  TO\n\
             in       127.0.0.1:1   auto      routes a,b\n\
             raw-tcp  127.0.0.1:22  tcp       cluster db\n"
        );
    }

    #[test]
    fn failure_chain_reads_in_order() {
        let f = json!({"status": 503, "attempts": [
            {"endpoint": "127.0.0.1:9", "status": 503, "retried_on": "5xx"},
            {"endpoint": "127.0.0.1:8", "reason": "upstream_reset"},
        ], "reason": "upstream_reset"});
        assert_eq!(
            chain(&f),
            "127.0.0.1:9 503 -> retry(5xx); 127.0.0.1:8 upstream_reset; reply upstream_reset"
        );
    }

    #[test]
    fn routes_come_with_their_listener() {
        let dump = json!({"listeners": [{"name": "in", "routes": [
            {"name": "api", "match": {"prefix": "/api", "hosts": ["a.example"]}, "cluster": "b", "timeout": "1s"}
        ]}]});
        let t = routes_table(&dump);
        assert!(
            t.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("in        api    host=a.example prefix=/api  b")),
            "{t}"
        );
    }

    #[test]
    fn tap_query_encodes_filters() {
        let a = TapArgs {
            route: Some("api".into()),
            prefix: Some("/a b".into()),
            limit: Some(3),
            headers: true,
            ..TapArgs::default()
        };
        assert_eq!(a.query(), "route=api&prefix=%2Fa+b&limit=3&headers=true");
    }
}
