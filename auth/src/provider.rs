//! The identity provider's keys, fetched from its URL and kept current: the only part of this
//! crate that does I/O.
//!
//! A [`Provider`] knows where the key set is (its URL, or the `jwks_uri` of the provider's
//! discovery document), fetches it over HTTPS (plain HTTP only to a loopback address), keeps
//! it for as long as the response's caching headers say (see [`crate::freshness`]), and fetches
//! it again when a token names a key it does not hold, at most once per interval (see
//! [`crate::refetch`]) and one fetch at a time. A failed fetch never throws keys away: the
//! last good set stays in use, and [`Provider::status`] says how old it is and what failed.
//!
//! Verification reads the current set through an atomic pointer and never waits on the
//! network; only [`Provider::refetch_unknown`] does, bounded by the fetch timeout. A later
//! OpenID Connect sign-in can share the same provider for its ID tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, Guard};
use jsonwebtoken::Algorithm;
use reqwest::header::{HeaderMap, ACCEPT, CACHE_CONTROL, DATE, EXPIRES};
use reqwest::Url;
use serde::Deserialize;

use crate::cache::TokenCache;
use crate::error::{FetchError, KeyError};
use crate::freshness::{self, Bounds};
use crate::jwks::{self, SetKey};
use crate::refetch::RefetchGate;
use crate::settings::{KeyLocation, RemoteKeys};

/// Largest discovery or key set document read; real ones are a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Longest wait before retrying after failed fetches (the wait doubles from one second).
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The keys one fetch produced.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<SetKey>,
}

/// Where the key set comes from.
#[derive(Debug)]
enum Location {
    Jwks(Url),
    Discovery { document: Url, issuer: String },
}

/// What [`Provider::status`] reports, for metrics and readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// Where the keys come from (the key set's or the discovery document's URL).
    pub source: String,
    /// How many usable keys are in use; zero until a fetch succeeded.
    pub keys: usize,
    /// Time since the keys in use were fetched; `None` until a fetch succeeded.
    pub age: Option<Duration>,
    /// Fetches attempted and failed since start.
    pub fetches: u64,
    pub failures: u64,
    /// Why the latest fetch failed, if it did (cleared by the next success).
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Progress {
    fetched_at: Option<Instant>,
    /// When the background refresh should fetch next.
    next_due: Option<Instant>,
    failures_in_row: u32,
    last_error: Option<String>,
}

/// The identity provider's key set, fetched and kept current. See the module documentation.
#[derive(Debug)]
pub struct Provider {
    location: Location,
    allowed: Vec<Algorithm>,
    client: reqwest::Client,
    timeout: Duration,
    bounds: Bounds,
    keys: ArcSwap<KeySet>,
    /// Bumped on every new key set, so a request that waited on a fetch knows one happened.
    generation: AtomicU64,
    /// The `jwks_uri` found by discovery; read again after a key set fetch fails.
    discovered: Mutex<Option<Url>>,
    /// Held for the whole of a fetch: at most one is in flight.
    flight: tokio::sync::Mutex<RefetchGate>,
    progress: Mutex<Progress>,
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Verified tokens to forget when a key they may have been signed with is withdrawn.
    forget: Option<Arc<TokenCache>>,
}

impl Provider {
    /// A provider of keys for the `allowed` (public-key) algorithms, as `remote` says. Reports
    /// every problem with the settings; does no I/O.
    pub fn new(
        remote: &RemoteKeys,
        issuer: Option<&str>,
        allowed: &[Algorithm],
    ) -> Result<Provider, Vec<KeyError>> {
        Provider::build(remote, issuer, allowed, None)
    }

    pub(crate) fn build(
        remote: &RemoteKeys,
        issuer: Option<&str>,
        allowed: &[Algorithm],
        forget: Option<Arc<TokenCache>>,
    ) -> Result<Provider, Vec<KeyError>> {
        let mut errors = Vec::new();
        let location = match &remote.location {
            KeyLocation::JwksUrl(url) => match fetchable(url) {
                Ok(url) => Some(Location::Jwks(url)),
                Err(reason) => {
                    errors.push(KeyError::JwksUrl {
                        url: url.clone(),
                        reason,
                    });
                    None
                }
            },
            KeyLocation::Discovery => match issuer {
                None => {
                    errors.push(KeyError::DiscoveryWithoutIssuer);
                    None
                }
                Some(issuer) => {
                    let document = format!(
                        "{}/.well-known/openid-configuration",
                        issuer.trim_end_matches('/')
                    );
                    match fetchable(&document) {
                        Ok(document) => Some(Location::Discovery {
                            document,
                            issuer: issuer.to_owned(),
                        }),
                        Err(reason) => {
                            errors.push(KeyError::DiscoveryIssuer {
                                issuer: issuer.to_owned(),
                                reason,
                            });
                            None
                        }
                    }
                }
            },
        };
        if remote.min_lifetime > remote.max_lifetime {
            errors.push(KeyError::KeyLifetimeBounds {
                min: remote.min_lifetime.as_secs(),
                max: remote.max_lifetime.as_secs(),
            });
        }
        // Keys configured over https never follow a redirect down to plain http.
        let https_only = location.as_ref().is_some_and(|location| match location {
            Location::Jwks(url) | Location::Discovery { document: url, .. } => {
                url.scheme() == "https"
            }
        });
        let client = reqwest::Client::builder()
            .timeout(remote.timeout)
            .connect_timeout(remote.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .https_only(https_only)
            .build()
            .map_err(|e| errors.push(KeyError::HttpClient(e.to_string())))
            .ok();
        match (location, client) {
            (Some(location), Some(client)) if errors.is_empty() => Ok(Provider {
                location,
                allowed: allowed.to_vec(),
                client,
                timeout: remote.timeout,
                bounds: Bounds {
                    min: remote.min_lifetime,
                    max: remote.max_lifetime,
                },
                keys: ArcSwap::from_pointee(KeySet::default()),
                generation: AtomicU64::new(0),
                discovered: Mutex::new(None),
                flight: tokio::sync::Mutex::new(RefetchGate::new(remote.refetch_interval)),
                progress: Mutex::new(Progress::default()),
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                forget,
            }),
            _ => Err(errors),
        }
    }

    /// The keys in use: a pointer load, no lock and no allocation.
    pub(crate) fn current(&self) -> Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Fetches the key set now, waiting for a fetch already in flight first. For the first
    /// fetch at start and for tests; the background [`Provider::run`] keeps the set current.
    pub async fn fetch_now(&self) -> Result<(), FetchError> {
        let mut gate = self.flight.lock().await;
        gate.fetching(Instant::now());
        self.refresh().await
    }

    /// Keeps the key set current for as long as it runs: fetches when the set's lifetime ends,
    /// and after a failure retries with a doubling wait (1 s up to 60 s).
    pub async fn run(self: Arc<Self>) {
        loop {
            let due = self.lock_progress().next_due;
            match due {
                Some(due) if due > Instant::now() => {
                    tokio::time::sleep_until(due.into()).await;
                    continue;
                }
                _ => {}
            }
            let mut gate = self.flight.lock().await;
            // Another fetch may have moved the schedule while this one waited for the lock.
            if self
                .lock_progress()
                .next_due
                .is_some_and(|due| due > Instant::now())
            {
                continue;
            }
            gate.fetching(Instant::now());
            let _ = self.refresh().await;
        }
    }

    /// After a token named a key the set does not hold: fetches the set again if the refetch
    /// interval allows, or waits for a fetch already in flight. True when the set changed, so
    /// the token is worth checking again. Never waits longer than the fetch timeout.
    pub async fn refetch_unknown(&self) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let attempt = async {
            let mut gate = self.flight.lock().await;
            if self.generation.load(Ordering::Acquire) != seen {
                return true;
            }
            if !gate.try_refetch(Instant::now()) {
                return false;
            }
            self.refresh().await.is_ok()
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(false)
    }

    /// How the keys stand now.
    pub fn status(&self) -> KeyStatus {
        let progress = self.lock_progress();
        KeyStatus {
            source: match &self.location {
                Location::Jwks(url) => url.to_string(),
                Location::Discovery { document, .. } => document.to_string(),
            },
            keys: self.keys.load().keys.len(),
            age: progress.fetched_at.map(|at| at.elapsed()),
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: progress.last_error.clone(),
        }
    }

    fn lock_progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One fetch, with its bookkeeping. The caller holds the flight lock.
    async fn refresh(&self) -> Result<(), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let outcome = self.fetch().await;
        let now = Instant::now();
        match outcome {
            Ok((set, lifetime)) => {
                self.install(set);
                let mut progress = self.lock_progress();
                progress.fetched_at = Some(now);
                progress.next_due = Some(now + lifetime);
                progress.failures_in_row = 0;
                progress.last_error = None;
                Ok(())
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let mut progress = self.lock_progress();
                progress.failures_in_row = progress.failures_in_row.saturating_add(1);
                let retry = Duration::from_secs(1)
                    .saturating_mul(1 << progress.failures_in_row.min(7).saturating_sub(1))
                    .min(MAX_RETRY);
                progress.next_due = Some(now + retry);
                progress.last_error = Some(error.to_string());
                let in_use = self.keys.load().keys.len();
                if in_use == 0 {
                    tracing::error!(
                        source = %self.status_source(),
                        error = %error,
                        "identity provider keys: cannot fetch them; every token is refused and \
                         /readyz fails until a fetch succeeds"
                    );
                } else {
                    tracing::warn!(
                        source = %self.status_source(),
                        error = %error,
                        keys_in_use = in_use,
                        "identity provider keys: fetch failed; the last good keys stay in use"
                    );
                }
                Err(error)
            }
        }
    }

    fn status_source(&self) -> &Url {
        match &self.location {
            Location::Jwks(url) => url,
            Location::Discovery { document, .. } => document,
        }
    }

    fn install(&self, set: KeySet) {
        let old = self.keys.load();
        let withdrawn = old
            .keys
            .iter()
            .any(|key| !set.keys.iter().any(|new| new.kid == key.kid));
        self.keys.store(Arc::new(set));
        self.generation.fetch_add(1, Ordering::AcqRel);
        if withdrawn {
            if let Some(cache) = &self.forget {
                cache.clear();
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), FetchError> {
        let url = match &self.location {
            Location::Jwks(url) => url.clone(),
            Location::Discovery { document, issuer } => {
                let known = self
                    .discovered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                match known {
                    Some(url) => url,
                    None => {
                        let url = self.discover(document, issuer).await?;
                        *self
                            .discovered
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(url.clone());
                        url
                    }
                }
            }
        };
        let result = self.fetch_set(url).await;
        if result.is_err() {
            // The provider may have moved its key set; ask the discovery document again.
            *self
                .discovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }

    async fn fetch_set(&self, url: Url) -> Result<(KeySet, Duration), FetchError> {
        let (headers, body) = self
            .get(url, "application/jwk-set+json, application/json")
            .await?;
        let text = std::str::from_utf8(&body).map_err(|_| FetchError::NotUtf8)?;
        let keys = jwks::parse(text, &self.allowed).map_err(|errors| {
            FetchError::Keys(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKey);
        }
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let lifetime = freshness::lifetime(
            header(CACHE_CONTROL),
            header(EXPIRES),
            header(DATE),
            SystemTime::now(),
            self.bounds,
        );
        Ok((KeySet { keys }, lifetime))
    }

    async fn discover(&self, document: &Url, issuer: &str) -> Result<Url, FetchError> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let (_, body) = self.get(document.clone(), "application/json").await?;
        let metadata: Metadata = serde_json::from_slice(&body)
            .map_err(|e| FetchError::Discovery(format!("not a JSON object: {e}")))?;
        let found = metadata
            .issuer
            .ok_or_else(|| FetchError::Discovery("it has no issuer".to_owned()))?;
        if found != issuer {
            return Err(FetchError::IssuerMismatch {
                expected: issuer.to_owned(),
                found,
            });
        }
        let jwks_uri = metadata
            .jwks_uri
            .ok_or_else(|| FetchError::Discovery("it has no jwks_uri".to_owned()))?;
        fetchable(&jwks_uri)
            .map_err(|reason| FetchError::Discovery(format!("jwks_uri {jwks_uri:?}: {reason}")))
    }

    /// A GET whose body is read up to [`MAX_DOCUMENT_BYTES`].
    async fn get(&self, url: Url, accept: &str) -> Result<(HeaderMap, Vec<u8>), FetchError> {
        let mut response = self
            .client
            .get(url)
            .header(ACCEPT, accept)
            .send()
            .await
            .map_err(|e| FetchError::Request(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(FetchError::TooLarge(MAX_DOCUMENT_BYTES));
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Request(describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge(MAX_DOCUMENT_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((headers, body))
    }
}

/// The error and its causes in one line ("error sending request: connection refused").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A URL keys may be fetched from: `https`, or `http` to a loopback address only (a key set
/// read in clear over a network could be replaced by anyone on the path).
pub(crate) fn fetchable(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL".to_owned());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("plain http is allowed only to a loopback address; use https".to_owned()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls_must_be_https_except_to_loopback() {
        for ok in [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.8.9.10/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost/keys",
        ] {
            assert!(fetchable(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://idp.example.com/jwks", "loopback"),
            ("http://10.0.0.1/jwks", "loopback"),
            ("ftp://idp.example.com/jwks", "scheme"),
            ("file:///etc/jwks.json", "scheme"),
            ("https://user:pw@idp.example.com/jwks", "credentials"),
            ("/jwks", "not a URL"),
            ("", "not a URL"),
        ] {
            let reason = fetchable(bad).unwrap_err();
            assert!(reason.contains(why), "{bad}: {reason}");
        }
    }
}
