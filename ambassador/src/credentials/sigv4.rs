//! AWS Signature Version 4, computed per attempt, as the last edit before sending.
//!
//! The canonical request (method, path, query, signed headers, payload hash) is hashed into
//! the string to sign, which is signed with a key derived from the secret access key, the
//! date, the region and the service. Paths are URI-encoded once more, except for S3 (AWS's
//! "encode twice" rule); a streamed body is signed as `UNSIGNED-PAYLOAD`.

use std::fmt::Write;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderName, HeaderValue, header};
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use proxy_core::http::inject::PrepareFuture;
use sha2::{Digest, Sha256};

use super::CredentialProvider;
use super::query::QUERY_VALUE;
use crate::secret::SecretCell;

pub struct SigV4 {
    pub service: String,
    pub region: String,
    pub access_key_id: SecretCell,
    pub secret_access_key: SecretCell,
    pub session_token: Option<SecretCell>,
}

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const X_AMZ_CONTENT: HeaderName = HeaderName::from_static("x-amz-content-sha256");

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The key for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

/// Each segment URI-encoded (unreserved characters kept), after removing `.` and `..`
/// segments and empty ones, as AWS does for every service but S3.
pub fn canonical_path(path: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 8);
    for s in &segs {
        out.push('/');
        out.extend(utf8_percent_encode(s, QUERY_VALUE));
    }
    if out.is_empty() || (path.ends_with('/') && !segs.is_empty()) {
        out.push('/');
    }
    out
}

/// Pairs decoded, re-encoded the AWS way, sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| {
                let d = percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned();
                utf8_percent_encode(&d, QUERY_VALUE).to_string()
            };
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        let _ = write!(out, "{k}={v}");
    }
    out
}

/// What one signature covers, already in canonical form.
pub struct Canonical<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Lowercased names with trimmed values, sorted by name.
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
}

/// The signature (hex) and the signed header list.
pub fn signature(
    c: &Canonical<'_>,
    amz_date: &str,
    region: &str,
    service: &str,
    secret: &str,
) -> (String, String) {
    let signed: Vec<&str> = c.headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let mut creq = format!("{}\n{}\n{}\n", c.method, c.path, c.query);
    for (k, v) in c.headers {
        let _ = writeln!(creq, "{k}:{v}");
    }
    let _ = write!(creq, "\n{signed}\n{}", c.payload_hash);
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(creq.as_bytes())
    );
    let key = signing_key(secret, date, region, service);
    (hex::encode(hmac_sha256(&key, sts.as_bytes())), signed)
}

fn trim_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SigV4 {
    /// Sign `req` as of `amz_date` (`YYYYMMDDTHHMMSSZ`).
    pub fn sign(&self, req: &mut Parts, body: Option<&Bytes>, amz_date: &str) {
        let payload_hash = match body {
            Some(b) => sha256_hex(b),
            None => "UNSIGNED-PAYLOAD".to_owned(),
        };
        let h = &mut req.headers;
        h.remove(header::AUTHORIZATION);
        h.insert(X_AMZ_DATE, HeaderValue::from_str(amz_date).expect("digits"));
        h.remove(X_AMZ_TOKEN);
        if let Some(t) = &self.session_token
            && let Ok(mut v) = HeaderValue::from_str(t.get().expose())
        {
            v.set_sensitive(true);
            h.insert(X_AMZ_TOKEN, v);
        }
        let s3 = self.service == "s3";
        if s3 && let Ok(v) = HeaderValue::from_str(&payload_hash) {
            h.insert(X_AMZ_CONTENT, v);
        }
        if !h.contains_key(header::HOST)
            && let Some(a) = req.uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            h.insert(header::HOST, v);
        }
        let mut headers: Vec<(String, String)> = h
            .iter()
            .filter(|(k, _)| {
                let k = k.as_str();
                k == "host" || k == "content-type" || k.starts_with("x-amz-")
            })
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    trim_value(&String::from_utf8_lossy(v.as_bytes())),
                )
            })
            .collect();
        headers.sort();
        let path = if s3 {
            req.uri.path().to_owned()
        } else {
            canonical_path(req.uri.path())
        };
        let query = canonical_query(req.uri.query().unwrap_or(""));
        let method = req.method.as_str().to_owned();
        let key = self.secret_access_key.get();
        let (sig, signed) = signature(
            &Canonical {
                method: &method,
                path: &path,
                query: &query,
                headers: &headers,
                payload_hash: &payload_hash,
            },
            amz_date,
            &self.region,
            &self.service,
            key.expose(),
        );
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={signed}, Signature={sig}",
            self.access_key_id.get().expose(),
            &amz_date[..8],
            self.region,
            self.service
        );
        if let Ok(mut v) = HeaderValue::from_str(&auth) {
            v.set_sensitive(true);
            req.headers.insert(header::AUTHORIZATION, v);
        }
    }
}

impl CredentialProvider for SigV4 {
    fn apply<'a>(&'a self, req: &'a mut Parts, body: Option<&'a Bytes>) -> PrepareFuture<'a> {
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        self.sign(req, body, &now);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from AWS's published aws-sig-v4-test-suite (the `get-vanilla`,
    //! `get-vanilla-query-order-key-case`, `get-utf8`, `get-space`, `get-slash-pointless-dot`,
    //! `post-vanilla` and `post-vanilla-query` cases, "Signature Version 4 Test Suite",
    //! https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html): credential
    //! AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830T123600Z, us-east-1,
    //! service "service". Each request has only `Host: example.amazonaws.com` and
    //! `X-Amz-Date`, and an empty body.
    use super::*;
    use crate::secret::Secret;

    const DATE: &str = "20150830T123600Z";
    const KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn suite(method: &str, raw_path: &str, query: &str) -> String {
        let headers = vec![
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), DATE.to_owned()),
        ];
        signature(
            &Canonical {
                method,
                path: &canonical_path(raw_path),
                query: &canonical_query(query),
                headers: &headers,
                payload_hash: &sha256_hex(b""),
            },
            DATE,
            "us-east-1",
            "service",
            KEY,
        )
        .0
    }

    #[test]
    fn aws_test_suite_vectors() {
        for (name, method, path, query, sig) in [
            (
                "get-vanilla",
                "GET",
                "/",
                "",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "get-vanilla-query-order-key-case",
                "GET",
                "/",
                "Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            (
                "get-utf8",
                "GET",
                "/ሴ",
                "",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            ),
            (
                "get-space",
                "GET",
                "/example space/",
                "",
                "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            ),
            (
                "get-slash-pointless-dot",
                "GET",
                "/./example",
                "",
                "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
            ),
            (
                "post-vanilla",
                "POST",
                "/",
                "",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            (
                "post-vanilla-query",
                "POST",
                "/",
                "Param1=value1",
                "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
            ),
        ] {
            assert_eq!(suite(method, path, query), sig, "{name}");
        }
    }

    #[test]
    fn signs_a_request_head_like_the_suite() {
        let signer = SigV4 {
            service: "service".into(),
            region: "us-east-1".into(),
            access_key_id: SecretCell::fixed(Secret::new("AKIDEXAMPLE")),
            secret_access_key: SecretCell::fixed(Secret::new(KEY)),
            session_token: None,
        };
        let (mut parts, ()) = http::Request::get("/?Param2=value2&Param1=value1")
            .header("host", "example.amazonaws.com")
            .header("authorization", "client's own")
            .body(())
            .unwrap()
            .into_parts();
        signer.sign(&mut parts, Some(&Bytes::new()), DATE);
        assert_eq!(
            parts.headers["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }
}
