//! The request shapes this instance sees: a bounded, sampled summary for admins who are looking
//! for the URLs to protect (docs/operations.md, "Finding the URLs to protect").
//!
//! One request in `proxy.shape_sample_every` (8 by default), drawn at random, is noted: its method, the shape of its normalized path
//! ([`rules::shape`]: ids, uuids, dates, hashes and tokens folded into typed placeholders), what
//! kind of request it was (a page, an XHR, an asset) and the rule that matched it, if any.
//! Never its query string, body, headers' values or user. Counts are estimates: each sampled
//! request counts for the sampling interval.
//!
//! Sampled requests are also kept one by one, for the preview of a rule
//! ([`rules::SampledRequest`]): time, app, method, normalized path, kind and, when the request
//! carries a credential that verifies, its user id. At most [`rules::MAX_SAMPLED`] are kept,
//! none older than 15 minutes ([`rules::SAMPLED_FOR_MS`]), so they are kept at the pace that
//! fills the window and no faster ([`Pace`]): one every 900 ms, after a burst of up to
//! [`PACE_BURST`]. Kept faster, the newest would push out the oldest and the sample would
//! cover the last seconds of heavy traffic instead of its 15 minutes. The credential is
//! verified only for a request that is kept, so the others pay nothing for it.
//!
//! Memory is bounded whatever the traffic: at most [`MAX_SHAPES`] entries of at most
//! [`rules::MAX_SHAPE_LEN`] bytes each. When the book is full, a new shape replaces the least
//! seen of a few entries picked at random (the way Redis approximates LFU eviction), so shapes
//! seen often stay while a flood of one-off paths churns among themselves.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, Method};
use indexmap::IndexMap;
use pingora::http::RequestHeader;
use serde::Serialize;

use crate::header_names::{SEC_FETCH_DEST, X_REQUESTED_WITH};

/// Most shapes kept.
pub const MAX_SHAPES: usize = 2_000;
/// How many random entries a full book compares to pick the one to drop.
const EVICTION_PROBES: usize = 5;
/// How often the instance publishes its shapes through the lock store, for the control plane.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);
/// How long a publication outlives its instance in the lock store, at most (the control plane
/// reads those younger than a minute).
pub const PUBLICATION_KEPT: Duration = Duration::from_secs(60);
/// How many shapes, the most seen, a publication carries.
pub const PUBLISHED: usize = 500;
/// How many sampled requests may be kept back to back before [`Pace`] spaces them out: a
/// quarter of the book, so a short visit (a few pages, each with its assets and XHRs) is kept
/// whole.
pub const PACE_BURST: u64 = 250;

/// What a request asked for, from its own headers (`Sec-Fetch-Dest` first, then
/// `X-Requested-With` and `Accept`, then the file extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Page,
    Xhr,
    Asset,
    Other,
}

/// File extensions of a page's assets, for a request that says nothing of what it wants.
const ASSET_EXTENSIONS: [&str; 17] = [
    "js", "mjs", "css", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "woff",
    "woff2", "ttf", "otf", "eot",
];

impl Kind {
    const ALL: [Kind; 4] = [Kind::Page, Kind::Xhr, Kind::Asset, Kind::Other];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn of(req: &RequestHeader, path: &str) -> Kind {
        let headers = &req.headers;
        if let Some(dest) = headers.get(&SEC_FETCH_DEST) {
            return match dest.as_bytes() {
                b"document" | b"iframe" | b"frame" => Kind::Page,
                b"empty" => Kind::Xhr,
                _ => Kind::Asset,
            };
        }
        if headers.contains_key(&X_REQUESTED_WITH) {
            return Kind::Xhr;
        }
        if let Some(accept) = headers.get(header::ACCEPT).map(|v| v.as_bytes()) {
            if contains(accept, b"text/html") {
                return Kind::Page;
            }
            if contains(accept, b"json") {
                return Kind::Xhr;
            }
        }
        let last = path.rsplit('/').next().unwrap_or_default();
        let is_asset = last.rsplit_once('.').is_some_and(|(_, extension)| {
            ASSET_EXTENSIONS
                .iter()
                .any(|asset| asset.eq_ignore_ascii_case(extension))
        });
        if is_asset {
            Kind::Asset
        } else {
            Kind::Other
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    method: Method,
    shape: Box<str>,
}

struct Stats {
    count: u64,
    first_seen: u64,
    last_seen: u64,
    kinds: u8,
    rule: Option<Box<str>>,
}

struct Book {
    entries: IndexMap<Key, Stats, foldhash::fast::RandomState>,
    /// Shapes dropped to make room.
    evicted: u64,
    /// xorshift state for picking eviction candidates.
    seed: u64,
    /// The sampled requests, oldest first.
    requests: VecDeque<rules::SampledRequest>,
}

/// The shapes this instance saw.
pub struct ShapeBook {
    /// One request in this many is noted; 0: none.
    every: u32,
    book: Mutex<Book>,
    /// When a noted request is also kept for the preview.
    pace: Pace,
}

/// The pace at which noted requests are kept for the preview: the rate that fills the book's
/// [`rules::MAX_SAMPLED`] requests in [`rules::SAMPLED_FOR_MS`], after a burst of up to
/// [`PACE_BURST`] (the generic cell rate algorithm, on one atomic: no lock is taken to refuse).
struct Pace {
    /// The theoretical arrival time of the next request kept at the steady pace, in
    /// milliseconds since the epoch.
    next: AtomicU64,
}

impl Pace {
    /// One kept request every this many milliseconds, sustained: 900.
    const INTERVAL_MS: u64 = rules::SAMPLED_FOR_MS / rules::MAX_SAMPLED as u64;

    fn new() -> Pace {
        Pace {
            next: AtomicU64::new(0),
        }
    }

    /// Is a request noted at `now` (milliseconds since the epoch) kept?
    fn admit(&self, now: u64) -> bool {
        let tolerance = (PACE_BURST - 1) * Self::INTERVAL_MS;
        let mut seen = self.next.load(Ordering::Relaxed);
        loop {
            let next = seen.max(now);
            if next - now > tolerance {
                return false;
            }
            match self.next.compare_exchange_weak(
                seen,
                next + Self::INTERVAL_MS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => seen = current,
            }
        }
    }
}

/// A request as [`ShapeBook::note`] takes it.
#[derive(Clone, Copy)]
pub struct Noted<'a> {
    pub method: &'a Method,
    /// The normalized path rules see.
    pub path: &'a str,
    /// The `[[app]]` it is for; `None` with a single app.
    pub app: Option<&'a str>,
    /// The rule that matched it, if any.
    pub rule: Option<&'a str>,
}

/// What an instance publishes through the lock store: its most seen shapes and its sampled
/// requests (the control plane reads both, `control-plane/src/shapes_api.rs`).
#[derive(Serialize)]
struct Publication {
    shapes: Vec<ShapeView>,
    requests: Vec<rules::SampledRequest>,
}

/// One shape as the admin port shows it: the entry an instance publishes and the control
/// plane merges ([`rules::ShapeEntry`]), and a rule for it.
#[derive(Serialize)]
pub struct ShapeView {
    #[serde(flatten)]
    pub entry: rules::ShapeEntry,
    /// A rule for it: `pattern` with typed captures and a `resource`.
    pub suggestion: Suggestion,
}

#[derive(Serialize)]
pub struct Suggestion {
    pub pattern: String,
    pub resource: String,
}

/// What the admin port answers: the shapes seen most first, with the book's bounds.
#[derive(Serialize)]
pub struct ShapeReport {
    pub sample_every: u32,
    pub max_shapes: usize,
    pub evicted: u64,
    pub shapes: Vec<ShapeView>,
}

thread_local! {
    /// xorshift state, seeded apart per thread.
    static DICE: Cell<u32> = Cell::new(seed());
}

/// A nonzero seed for one thread: its id hashed with the time.
fn seed() -> u32 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = foldhash::fast::RandomState::default().build_hasher();
    std::thread::current().id().hash(&mut hasher);
    now_ms().hash(&mut hasher);
    (hasher.finish() as u32) | 1
}

/// Is this request one of the sampled ones? A random draw, one in `every`: a counter
/// would alias with traffic that repeats in a cycle (a page that loads the same ten requests
/// every time), showing some of them at twice their rate and others never.
fn sampled(every: u32) -> bool {
    DICE.with(|dice| {
        let mut x = dice.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        dice.set(x);
        x % every == 0
    })
}

impl ShapeBook {
    /// A book noting one request in `every` (0: none).
    pub fn new(every: u32) -> ShapeBook {
        ShapeBook {
            every,
            book: Mutex::new(Book {
                entries: IndexMap::with_capacity_and_hasher(64, Default::default()),
                evicted: 0,
                seed: 0x9E37_79B9_7F4A_7C15,
                requests: VecDeque::new(),
            }),
            pace: Pace::new(),
        }
    }

    /// Notes a request, if it is a sampled one, and keeps it for the preview when the pace
    /// allows. `path` is the normalized path rules see, `app` the `[[app]]` it is for; `user`
    /// says who sent it (only called for a request that is kept, so no other verifies anything
    /// here).
    pub fn note(
        &self,
        request: Noted<'_>,
        req: &RequestHeader,
        user: impl FnOnce() -> Option<String>,
    ) {
        if self.every != 0 && sampled(self.every) {
            let kind = Kind::of(req, request.path);
            let now = now_ms();
            // A path too long to keep spends none of the pace and verifies nothing.
            let keepable = request.path.len() <= rules::MAX_SAMPLED_PATH;
            let kept = (keepable && self.pace.admit(now)).then(user);
            self.record(&request, kind, kept, now);
        }
    }

    /// Counts a noted request in its shape and, when `kept` (with who sent it, if known),
    /// keeps it for the preview.
    fn record(&self, request: &Noted<'_>, kind: Kind, kept: Option<Option<String>>, now: u64) {
        let Noted {
            method,
            path,
            app,
            rule,
        } = *request;
        let key = Key {
            method: method.clone(),
            shape: rules::shape(path).into_boxed_str(),
        };
        let sample = kept
            .filter(|_| path.len() <= rules::MAX_SAMPLED_PATH)
            .map(|user| rules::SampledRequest {
                at: now,
                app: app.map(str::to_owned),
                method: method.to_string(),
                path: path.to_owned(),
                kind: rules::SHAPE_KINDS[kind as usize].to_owned(),
                user: user.filter(|user| user.len() <= rules::MAX_SAMPLED_USER),
            });
        let Ok(mut book) = self.book.lock() else {
            return;
        };
        book.forget_requests_before(now.saturating_sub(rules::SAMPLED_FOR_MS));
        if let Some(sample) = sample {
            if book.requests.len() >= rules::MAX_SAMPLED {
                book.requests.pop_front();
            }
            book.requests.push_back(sample);
        }
        if let Some(stats) = book.entries.get_mut(&key) {
            stats.count += u64::from(self.every);
            stats.last_seen = now;
            stats.kinds |= kind.bit();
            if stats.rule.as_deref() != rule {
                stats.rule = rule.map(Into::into);
            }
            return;
        }
        if book.entries.len() >= MAX_SHAPES {
            book.evict();
        }
        book.entries.insert(
            key,
            Stats {
                count: u64::from(self.every),
                first_seen: now,
                last_seen: now,
                kinds: kind.bit(),
                rule: rule.map(Into::into),
            },
        );
    }

    /// The shapes whose shape starts with `prefix`, most seen first, at most `limit`.
    pub fn report(&self, prefix: &str, limit: usize) -> ShapeReport {
        let Ok(book) = self.book.lock() else {
            return ShapeReport {
                sample_every: self.every,
                max_shapes: MAX_SHAPES,
                evicted: 0,
                shapes: Vec::new(),
            };
        };
        let mut shapes: Vec<ShapeView> = book
            .entries
            .iter()
            .filter(|(key, _)| key.shape.starts_with(prefix))
            .map(|(key, stats)| {
                let (pattern, resource) = rules::suggest_rule(&key.shape);
                ShapeView {
                    entry: rules::ShapeEntry {
                        method: key.method.to_string(),
                        shape: key.shape.to_string(),
                        count: stats.count,
                        first_seen: stats.first_seen,
                        last_seen: stats.last_seen,
                        kinds: Kind::ALL
                            .into_iter()
                            .filter(|k| stats.kinds & k.bit() != 0)
                            .map(|k| rules::SHAPE_KINDS[k as usize].to_owned())
                            .collect(),
                        writes: !matches!(
                            key.method,
                            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
                        ),
                        rule: stats.rule.as_deref().map(str::to_owned),
                    },
                    suggestion: Suggestion { pattern, resource },
                }
            })
            .collect();
        shapes.sort_by(|a, b| {
            let (a, b) = (&a.entry, &b.entry);
            b.count
                .cmp(&a.count)
                .then_with(|| a.shape.cmp(&b.shape))
                .then_with(|| a.method.cmp(&b.method))
        });
        shapes.truncate(limit);
        ShapeReport {
            sample_every: self.every,
            max_shapes: MAX_SHAPES,
            evicted: book.evicted,
            shapes,
        }
    }

    /// The sampled requests of the last 15 minutes, oldest first.
    pub fn requests(&self) -> Vec<rules::SampledRequest> {
        let Ok(mut book) = self.book.lock() else {
            return Vec::new();
        };
        book.forget_requests_before(now_ms().saturating_sub(rules::SAMPLED_FOR_MS));
        book.requests.iter().cloned().collect()
    }

    /// Bytes the book holds in its entries' keys and values, for the memory bound's test.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let book = self.book.lock().expect("the book");
        let entry = std::mem::size_of::<Key>() + std::mem::size_of::<Stats>() + 8;
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        book.entries.capacity() * entry
            + book
                .entries
                .iter()
                .map(|(k, v)| k.shape.len() + v.rule.as_deref().map_or(0, str::len))
                .sum::<usize>()
            + book.requests.capacity() * std::mem::size_of::<rules::SampledRequest>()
            + book
                .requests
                .iter()
                .map(|r| {
                    text(&r.app)
                        + r.method.capacity()
                        + r.path.capacity()
                        + r.kind.capacity()
                        + text(&r.user)
                })
                .sum::<usize>()
    }
}

impl Book {
    /// Drops the sampled requests from before `since`.
    fn forget_requests_before(&mut self, since: u64) {
        while self.requests.front().is_some_and(|r| r.at < since) {
            self.requests.pop_front();
        }
    }

    /// Drops the least seen of a few entries picked at random.
    fn evict(&mut self) {
        let len = self.entries.len();
        let mut victim = None;
        for _ in 0..EVICTION_PROBES {
            let i = (self.next_random() % len as u64) as usize;
            let count = self.entries[i].count;
            if victim.is_none_or(|(_, least)| count < least) {
                victim = Some((i, count));
            }
        }
        if let Some((i, _)) = victim {
            self.entries.swap_remove_index(i);
            self.evicted += 1;
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        x
    }
}

/// Publishes the book's most seen shapes and its sampled requests through the lock store every [`PUBLISH_EVERY`], under
/// this instance's name, so that the control plane can merge every instance's. Runs for the
/// life of the process; a failed publication is only logged (the next one replaces it).
pub async fn publish(book: &ShapeBook, store: &dyn store::LockStore, instance: &str) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let shapes = book.report("", PUBLISHED).shapes;
        if shapes.is_empty() {
            continue;
        }
        let publication = Publication {
            shapes,
            requests: book.requests(),
        };
        let summary = match serde_json::to_string(&publication) {
            Ok(summary) => summary,
            Err(e) => {
                tracing::warn!(error = %e, "request shapes not published");
                continue;
            }
        };
        if let Err(e) = store.shapes_put(instance, &summary, PUBLICATION_KEPT).await {
            tracing::debug!(error = %e, "request shapes not published");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_EVERY: u32 = 8;

    /// Records a sampled request with no app and no user.
    fn record(
        book: &ShapeBook,
        method: &Method,
        path: &str,
        kind: Kind,
        rule: Option<&str>,
        now: u64,
    ) {
        let noted = Noted {
            method,
            path,
            app: None,
            rule,
        };
        book.record(&noted, kind, Some(None), now);
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).expect("a request");
        for (name, value) in headers {
            req.insert_header(name.to_string(), *value)
                .expect("a header");
        }
        req
    }

    #[test]
    fn a_request_is_a_page_an_xhr_or_an_asset_by_its_own_headers() {
        for (headers, path, kind) in [
            (vec![("Sec-Fetch-Dest", "document")], "/a", Kind::Page),
            (vec![("Sec-Fetch-Dest", "iframe")], "/a", Kind::Page),
            (
                vec![("Sec-Fetch-Dest", "empty"), ("Accept", "text/html")],
                "/a",
                Kind::Xhr,
            ),
            (vec![("Sec-Fetch-Dest", "script")], "/a", Kind::Asset),
            (
                vec![("X-Requested-With", "XMLHttpRequest")],
                "/a",
                Kind::Xhr,
            ),
            (
                vec![("Accept", "text/html,application/xhtml+xml")],
                "/a",
                Kind::Page,
            ),
            (vec![("Accept", "application/json")], "/a", Kind::Xhr),
            (vec![], "/static/app.CSS", Kind::Asset),
            (vec![], "/api/save", Kind::Other),
        ] {
            assert_eq!(
                Kind::of(&request(&headers), path),
                kind,
                "{headers:?} {path}"
            );
        }
    }

    #[test]
    fn objects_of_one_shape_add_up_and_the_report_filters_and_suggests() {
        let book = ShapeBook::new(SAMPLE_EVERY);
        for (i, (method, path, kind, rule)) in [
            (Method::GET, "/admin/pages/3/edit/", Kind::Page, None),
            (Method::GET, "/admin/pages/41/edit/", Kind::Page, None),
            (Method::POST, "/admin/pages/41/edit/", Kind::Xhr, None),
            (Method::POST, "/admin/pages/41/lock/", Kind::Xhr, None),
            (
                Method::GET,
                "/admin/pages/41/edit/",
                Kind::Xhr,
                Some("pages"),
            ),
            (Method::GET, "/static/app.js", Kind::Asset, None),
        ]
        .into_iter()
        .enumerate()
        {
            record(&book, &method, path, kind, rule, 1_000 + i as u64);
        }
        let report = book.report("/admin/pages/", 100);
        let rows: Vec<(&str, &str, u64, bool)> = report
            .shapes
            .iter()
            .map(|s| {
                (
                    s.entry.method.as_str(),
                    s.entry.shape.as_str(),
                    s.entry.count,
                    s.entry.writes,
                )
            })
            .collect();
        let n = u64::from(SAMPLE_EVERY);
        assert_eq!(
            rows,
            [
                ("GET", "/admin/pages/{int}/edit/", 3 * n, false),
                ("POST", "/admin/pages/{int}/edit/", n, true),
                ("POST", "/admin/pages/{int}/lock/", n, true),
            ]
        );
        let edit = &report.shapes[0];
        assert_eq!(edit.entry.kinds, ["page", "xhr"]);
        assert_eq!(
            (edit.entry.first_seen, edit.entry.last_seen),
            (1_000, 1_004)
        );
        assert_eq!(edit.entry.rule.as_deref(), Some("pages"));
        assert_eq!(edit.suggestion.pattern, "/admin/pages/{id:int}/edit/");
        assert_eq!(edit.suggestion.resource, "pages:{id}");
        assert_eq!(book.report("", 2).shapes.len(), 2);
    }

    #[test]
    fn a_million_distinct_paths_stay_within_the_bound_and_frequent_shapes_survive() {
        let book = ShapeBook::new(SAMPLE_EVERY);
        // A shape seen often before the flood.
        for _ in 0..50 {
            record(
                &book,
                &Method::GET,
                "/admin/pages/1/edit/",
                Kind::Page,
                None,
                1,
            );
        }
        let bound = MAX_SHAPES
            * (std::mem::size_of::<Key>()
                + std::mem::size_of::<Stats>()
                + 8
                + rules::MAX_SHAPE_LEN
                + rules::limits::ID_MAX_LEN)
            * 2
            + rules::MAX_SAMPLED
                * (std::mem::size_of::<rules::SampledRequest>()
                    + rules::MAX_SAMPLED_PATH
                    + rules::MAX_SAMPLED_USER
                    + rules::APP_NAME_MAX_LEN
                    + 32)
                * 2;
        for i in 0..1_000_000u64 {
            // Words, not ids, so that each is a shape of its own.
            let word: String = format!("{i:x}")
                .chars()
                .map(|c| (b'g' + c.to_digit(16).unwrap_or(0) as u8) as char)
                .collect();
            record(
                &book,
                &Method::POST,
                &format!("/flood/{word}/x"),
                Kind::Other,
                None,
                2,
            );
        }
        let report = book.report("", usize::MAX);
        assert_eq!(report.shapes.len(), MAX_SHAPES);
        assert!(
            report.evicted >= 1_000_000 - MAX_SHAPES as u64,
            "{}",
            report.evicted
        );
        assert!(
            book.heap_bytes() <= bound,
            "{} > {bound}",
            book.heap_bytes()
        );
        assert_eq!(report.shapes[0].entry.shape, "/admin/pages/{int}/edit/");
        assert_eq!(report.shapes[0].entry.count, 50 * u64::from(SAMPLE_EVERY));
    }

    #[test]
    fn a_published_shape_reads_as_the_entry_the_control_plane_merges() {
        let book = ShapeBook::new(SAMPLE_EVERY);
        record(&book, &Method::POST, "/a/1/save", Kind::Xhr, Some("a"), 7);
        let json = serde_json::to_string(&book.report("", PUBLISHED).shapes).expect("JSON");
        let entries: Vec<rules::ShapeEntry> = serde_json::from_str(&json).expect("entries");
        assert_eq!(
            entries,
            [rules::ShapeEntry {
                method: "POST".to_owned(),
                shape: "/a/{int}/save".to_owned(),
                count: u64::from(SAMPLE_EVERY),
                first_seen: 7,
                last_seen: 7,
                kinds: vec!["xhr".to_owned()],
                writes: true,
                rule: Some("a".to_owned()),
            }]
        );
    }

    #[test]
    fn sampling_is_one_in_n_at_random_whatever_the_traffic_repeats() {
        // Ten requests repeated in a cycle: a counter would only ever note every other one.
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            for slot in seen.iter_mut() {
                if sampled(SAMPLE_EVERY) {
                    *slot += 1;
                }
            }
        }
        let total: u32 = seen.iter().sum();
        assert!((11_000..=14_000).contains(&total), "{total} of 100,000");
        assert!(seen.iter().all(|n| (1_000..=1_500).contains(n)), "{seen:?}");
        // Every request, and none.
        assert!((0..100).all(|_| sampled(1)));
        let off = ShapeBook::new(0);
        let noted = Noted {
            method: &Method::GET,
            path: "/a/1",
            app: None,
            rule: None,
        };
        off.note(noted, &request(&[]), || panic!("no user is asked for"));
        assert!(off.report("", 10).shapes.is_empty());
    }

    #[test]
    fn the_pace_keeps_a_burst_then_one_request_every_interval() {
        let pace = Pace::new();
        let t = 1_000_000;
        assert!((0..PACE_BURST).all(|_| pace.admit(t)));
        assert!(!pace.admit(t), "past the burst");
        assert!(!pace.admit(t + Pace::INTERVAL_MS - 1));
        assert!(pace.admit(t + Pace::INTERVAL_MS));
        assert!(!pace.admit(t + Pace::INTERVAL_MS));
        // Sustained: one per interval, which fills the book's window and no faster.
        let later = t + 10 * Pace::INTERVAL_MS;
        let kept = (0..500).filter(|i| pace.admit(later + i)).count();
        assert_eq!(kept, 9, "nine intervals had passed, each earning one");
        assert_eq!(
            Pace::INTERVAL_MS * rules::MAX_SAMPLED as u64,
            rules::SAMPLED_FOR_MS
        );
        // A quiet spell earns back the whole burst, and no more.
        let quiet = later + 1_000 * Pace::INTERVAL_MS;
        assert_eq!(
            (0..1_000).filter(|_| pace.admit(quiet)).count(),
            PACE_BURST as usize
        );
    }

    #[test]
    fn a_request_past_the_pace_is_counted_but_not_kept_and_its_sender_not_verified() {
        let book = ShapeBook::new(1);
        let noted = Noted {
            method: &Method::GET,
            path: "/a/1",
            app: None,
            rule: None,
        };
        let mut asked = 0;
        for _ in 0..PACE_BURST + 50 {
            book.note(noted, &request(&[]), || {
                asked += 1;
                Some("alice".to_owned())
            });
        }
        // One more is earned if the loop took longer than an interval (900 ms) on a busy host.
        assert!(
            (PACE_BURST..=PACE_BURST + 1).contains(&asked),
            "only a kept request verifies its sender: {asked}"
        );
        let requests = book.requests();
        assert_eq!(requests.len() as u64, asked);
        assert!(requests.iter().all(|r| r.user.as_deref() == Some("alice")));
        let report = book.report("", 10);
        assert_eq!(report.shapes[0].entry.count, PACE_BURST + 50);

        // A path too long to keep is counted, and neither verifies its sender nor spends the
        // pace of the requests that can be kept.
        let fresh = ShapeBook::new(1);
        let long = "/x/".to_owned() + &"a".repeat(rules::MAX_SAMPLED_PATH);
        let long_path = Noted {
            path: &long,
            ..noted
        };
        for _ in 0..PACE_BURST + 50 {
            fresh.note(long_path, &request(&[]), || panic!("no user is asked for"));
        }
        fresh.note(noted, &request(&[]), || Some("alice".to_owned()));
        assert_eq!(fresh.requests().len(), 1, "the burst is still whole");
    }

    #[test]
    fn sampled_requests_keep_who_asked_what_at_most_a_thousand_and_fifteen_minutes() {
        let book = ShapeBook::new(1);
        let edit = Noted {
            method: &Method::POST,
            path: "/wiki/pages/12/edit",
            app: Some("wiki"),
            rule: None,
        };
        book.record(&edit, Kind::Xhr, Some(Some("alice".to_owned())), 1_000);
        let long = "/x/".to_owned() + &"a".repeat(rules::MAX_SAMPLED_PATH);
        let long_path = Noted {
            path: &long,
            ..edit
        };
        book.record(&long_path, Kind::Page, Some(None), 1_001);
        let long_user = "u".repeat(rules::MAX_SAMPLED_USER + 1);
        book.record(&edit, Kind::Xhr, Some(Some(long_user)), 1_002);
        let kept: Vec<rules::SampledRequest> =
            book.book.lock().expect("the book").requests.clone().into();
        assert_eq!(
            kept,
            [
                rules::SampledRequest {
                    at: 1_000,
                    app: Some("wiki".to_owned()),
                    method: "POST".to_owned(),
                    path: "/wiki/pages/12/edit".to_owned(),
                    kind: "xhr".to_owned(),
                    user: Some("alice".to_owned()),
                },
                rules::SampledRequest {
                    at: 1_002,
                    user: None,
                    ..kept[0].clone()
                },
            ],
            "a path too long is left out, a user id too long is not kept"
        );

        // A thousand at most: the oldest go first.
        let now = 10 * rules::SAMPLED_FOR_MS;
        for i in 0..(rules::MAX_SAMPLED as u64 + 10) {
            book.record(&edit, Kind::Xhr, Some(None), now + i);
        }
        let requests = book.book.lock().expect("the book").requests.clone();
        assert_eq!(requests.len(), rules::MAX_SAMPLED);
        assert_eq!(requests.front().map(|r| r.at), Some(now + 10));

        // Fifteen minutes at most: a request noted later drops the ones before.
        book.record(
            &edit,
            Kind::Xhr,
            Some(None),
            now + 20 + rules::SAMPLED_FOR_MS,
        );
        let requests = book.book.lock().expect("the book").requests.clone();
        let oldest = requests.front().map(|r| r.at);
        let newest = requests.back().map(|r| r.at);
        assert_eq!(oldest, Some(now + 20));
        assert_eq!(newest, Some(now + 20 + rules::SAMPLED_FOR_MS));
        assert_eq!(requests.len(), rules::MAX_SAMPLED - 10 + 1);
        // The publication forgets them by the clock too.
        assert!(book.requests().is_empty(), "noted in 1970, gone now");
    }
}
