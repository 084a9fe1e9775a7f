//! Global rate limiting in Redis: every replica of a service counts in the same key, so the
//! limit holds across them. A fixed window per key: one atomic Lua script increments the
//! count and, on the window's first request, sets the key to expire when the window ends.
//!
//! The connection is made in the background and kept by redis-rs's `ConnectionManager`
//! (multiplexed, reconnecting). A request never waits for a connection: while there is none,
//! or when Redis does not answer within `timeout`, the configured failure mode decides.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::Quota;
use crate::config::{FailureMode, RateLimitService};

/// `KEYS[1]` the window's key, `ARGV[1]` its length in ms. Returns the count so far and the
/// milliseconds left in the window.
const SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

/// What Redis said about one request.
pub enum Answer {
    Allowed(Quota),
    Limited(Quota),
    /// No answer in time (or no connection): the failure mode applies.
    Unavailable,
}

pub struct RedisLimiter {
    config: RateLimitService,
    conn: Arc<ArcSwapOption<ConnectionManager>>,
    script: Script,
    /// Checks that had no answer in time.
    pub errors: Counter,
}

impl RedisLimiter {
    /// Start connecting in the background; usable at once (unavailable until connected).
    pub fn start(config: &RateLimitService, errors: Counter) -> RedisLimiter {
        let conn: Arc<ArcSwapOption<ConnectionManager>> = Arc::default();
        let slot = conn.clone();
        let url = config.redis.clone();
        let timeout = config.timeout.get();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let attempt = async {
                    let client = redis::Client::open(url.as_str())?;
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
                        .set_response_timeout(Some(timeout));
                    ConnectionManager::new_with_config(client, cfg).await
                };
                match attempt.await {
                    Ok(c) => {
                        tracing::info!("connected to the rate limit Redis");
                        slot.store(Some(Arc::new(c)));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot connect to the rate limit Redis");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        RedisLimiter {
            config: config.clone(),
            conn,
            script: Script::new(SCRIPT),
            errors,
        }
    }

    pub fn config(&self) -> &RateLimitService {
        &self.config
    }

    pub fn fail_open(&self) -> bool {
        self.config.failure_mode == FailureMode::Allow
    }

    /// Count one request in `key`'s current window of `per`, allowed while the count is at
    /// most `limit`.
    pub async fn check(&self, key: &[u8], limit: u64, per: Duration) -> Answer {
        let Some(conn) = self.conn.load_full() else {
            self.errors.inc();
            return Answer::Unavailable;
        };
        let mut conn = (*conn).clone();
        let mut full_key = Vec::with_capacity(self.config.key_prefix.len() + 1 + key.len());
        full_key.extend_from_slice(self.config.key_prefix.as_bytes());
        full_key.push(b':');
        full_key.extend_from_slice(key);
        let window_ms = per.as_millis().max(1) as u64;
        let mut invocation = self.script.key(full_key);
        invocation.arg(window_ms);
        let call = invocation.invoke_async::<(u64, i64)>(&mut conn);
        match tokio::time::timeout(self.config.timeout.get(), call).await {
            Ok(Ok((count, ttl))) => {
                let quota = Quota {
                    limit,
                    remaining: limit.saturating_sub(count),
                    reset: Duration::from_millis(ttl.max(0) as u64),
                };
                if count <= limit {
                    Answer::Allowed(quota)
                } else {
                    Answer::Limited(quota)
                }
            }
            Ok(Err(e)) => {
                self.errors.inc();
                tracing::debug!(error = %e, "rate limit Redis call failed");
                Answer::Unavailable
            }
            Err(_) => {
                self.errors.inc();
                Answer::Unavailable
            }
        }
    }
}
