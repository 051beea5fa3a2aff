//! A randomized history against three `latch proxy` instances on one Redis, with faults, and a
//! checker that the grants the protected app saw never let two holders overlap.
//!
//! Twenty clients (four of them admins) hammer four documents through random instances:
//! reading (a safe request, which claims or renews), writing (an unsafe request), releasing
//! (`POST /__latch/release`), taking over (`POST /__latch/takeover`, admins only, never on the
//! last document so that leases there lapse rather than being taken) and now and then going
//! quiet for longer than the lease. Meanwhile one instance is killed with SIGKILL
//! and replaced, Redis is killed and restarted empty (losing every lock and fence record), and
//! later another instance is killed and replaced.
//!
//! The test's own upstream records every request that reached it with the user and fence the
//! proxy attached. A request that reached the upstream with a fence is a *grant*: the proxy
//! claimed or renewed the lock for that user at some moment between the client sending the
//! request and the upstream receiving it. Takeover responses are grants too (between send and
//! response). All times are one monotonic clock in the test process. The checker then demands:
//!
//! 1. **One holder per fence:** all grants of one resource carrying the same fence name the
//!    same user. A fence's grants form a *tenure*.
//! 2. **Fences never go back:** if grant `a` certainly happened before grant `b` (the upstream
//!    saw `a` before `b` was sent), then `b.fence >= a.fence`, and `b.fence > a.fence` when the
//!    users differ. This is what stops a stale holder's write: once a newer holder has been
//!    granted, no request of the older one is granted under its old fence. It spans the Redis
//!    restart, so fences after the data loss must exceed every fence from before it.
//! 3. **No overlap:** for consecutive tenures `T1`, `T2` of a resource (by fence), `T1` must
//!    have ended by the time `T2` began, for a reason the history shows:
//!    - `T2` was created by a takeover, or a takeover whose outcome the client never learned
//!      (instance killed, store error) overlaps the gap after `T1`'s last grant;
//!    - `T1`'s holder released it (204) after `T1`'s last grant and before `T2` was seen
//!      (each client is sequential, so its release follows its own last grant);
//!    - `T1`'s lease could have lapsed: `T2` was seen at least one lease after the last
//!      renewal `T1` can be sure of. A safe request the instance answers from its memory of
//!      recent claims renews nothing, and that memory is consulted for at most
//!      [`RECENT_CLAIM_TTL`] after the store last answered, so the last renewal happened no
//!      earlier than that long before the sending of `T1`'s last grant;
//!    - Redis lost its data in between: `T2` was seen after Redis went down and `T1` began
//!      before it came back.
//!
//!    Anything else means `T2`'s holder was granted while `T1`'s holder still held the lock.
//!
//! A second history (`queue`, below) drives the wait queue through three lock store handles on
//! one Redis, as three instances would, and checks the event stream they share: every offer
//! goes to the head of the line (FIFO), the line only ever loses people or gains them at the
//! back, and while a reservation stands nobody but its owner is granted the resource, and its
//! owner only once.
//!
//! The checker only accepts what the observations prove possible; requests whose outcome the
//! client never learned can only make a real overlap go unnoticed, never invent one. It is
//! itself tested against histories with planted violations below.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Router;
use reqwest::header::{AUTHORIZATION, ORIGIN};
use serde_json::{json, Value};
use tests::instances::{bearer, start_instance};
use tests::redis::RedisServer;
use tests::Latch;

const RULES: &str = r#"
[[rule]]
id = "doc"
pattern = "/doc/(?P<id>[0-9]+)"
resource = "doc:{id}"
"#;

const USERS: usize = 16;
const ADMINS: usize = 4;
const RESOURCES: u32 = 4;
/// `lease_seconds` in the instances' config (the smallest allowed).
const LEASE: Duration = Duration::from_secs(5);
const MIN_OPS: u64 = 10_000;
/// Long enough for the whole fault schedule; the run stops once both this and `MIN_OPS` are
/// reached.
const MIN_RUN: Duration = Duration::from_secs(32);
/// The run gives up (and fails) if it has not done `MIN_OPS` by then.
const MAX_RUN: Duration = Duration::from_secs(75);
/// Rounding between Redis' millisecond deadlines and this process's clock.
const CLOCK_SLACK_US: u64 = 25_000;
/// How long an instance answers a holder's safe requests from its memory of a claim without
/// asking the store (and so without renewing the lease): the proxy's
/// `state::RECENT_CLAIM_TTL`, which this test, driving the binary, cannot import.
const RECENT_CLAIM_TTL: Duration = Duration::from_secs(1);

/// The operations a client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Release,
    Takeover,
}

/// One request as the client saw it. Times are µs since the start of the run.
#[derive(Debug, Clone)]
struct Op {
    id: u64,
    user: String,
    kind: Kind,
    resource: u32,
    send: u64,
    recv: u64,
    /// 0 when no response arrived (connection refused or reset: a killed instance).
    status: u16,
    /// For a successful takeover: the fence the taker now holds.
    takeover_fence: Option<u64>,
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    op: u64,
    user: String,
    resource: String,
    fence: Option<u64>,
    at: u64,
}

/// When Redis was down (it came back empty).
#[derive(Debug, Clone, Copy, Default)]
struct Outage {
    down: u64,
    up: u64,
}

/// A tiny deterministic generator (xorshift64*), so a failing run can be replayed with
/// `LATCH_HISTORY_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// The recording upstream.
struct Recorder {
    clock: Arc<Clock>,
    seen: Mutex<Vec<Seen>>,
}

async fn record(State(rec): State<Arc<Recorder>>, headers: HeaderMap) -> &'static str {
    let at = rec.clock.now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        op: header("x-test-op")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        user: header("x-latch-user").unwrap_or_default(),
        resource: header("x-latch-resource").unwrap_or_default(),
        fence: header("x-latch-fence").and_then(|v| v.parse().ok()),
        at,
    };
    rec.seen.lock().unwrap().push(seen);
    "ok"
}

/// What every client shares.
struct Run {
    clock: Arc<Clock>,
    http: reqwest::Client,
    /// Proxy ports; a killed instance keeps its slot (and refuses connections) until replaced.
    ports: RwLock<Vec<u16>>,
    next_op: AtomicU64,
    stop: AtomicBool,
}

async fn client_loop(run: Arc<Run>, user: String, admin: bool, seed: u64) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    let auth = bearer(&user, if admin { &["admin"] } else { &[] });
    let mut ops = Vec::new();
    let mut quiet_after = false;
    while !run.stop.load(Ordering::Relaxed) {
        if std::mem::take(&mut quiet_after) || rng.chance(2) {
            // Go quiet for longer than the lease: whatever this user holds lapses.
            let quiet = 5_500 + rng.below(1_500);
            tokio::time::sleep(Duration::from_millis(quiet)).await;
            continue;
        }
        let resource = u32::try_from(rng.below(u64::from(RESOURCES))).unwrap_or(0);
        let kind = match rng.below(100) {
            0..=54 => Kind::Read,
            55..=74 => Kind::Write,
            75..=89 => Kind::Release,
            // The last document is never taken over, so its quiet holders' leases lapse.
            _ if admin && resource + 1 < RESOURCES => Kind::Takeover,
            _ => Kind::Read,
        };
        let port = {
            let ports = run.ports.read().unwrap();
            ports[usize::try_from(rng.below(ports.len() as u64)).unwrap_or(0)]
        };
        let id = run.next_op.fetch_add(1, Ordering::Relaxed);
        let base = format!("http://127.0.0.1:{port}");
        let request = match kind {
            Kind::Read => run.http.get(format!("{base}/doc/{resource}")),
            Kind::Write => run.http.post(format!("{base}/doc/{resource}")).body("edit"),
            Kind::Release | Kind::Takeover => {
                let action = if kind == Kind::Release {
                    "release"
                } else {
                    "takeover"
                };
                run.http
                    .post(format!("{base}/__latch/{action}"))
                    .header(ORIGIN, &base)
                    .body(json!({ "resource": format!("doc:{resource}") }).to_string())
            }
        }
        .header(AUTHORIZATION, &auth)
        .header("x-test-op", id.to_string());

        let send = run.clock.now();
        let (status, body) = match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = if kind == Kind::Takeover && status == 200 {
                    resp.json::<Value>().await.ok()
                } else {
                    let _ = resp.bytes().await;
                    None
                };
                (status, body)
            }
            Err(_) => (0, None),
        };
        let recv = run.clock.now();
        if resource + 1 == RESOURCES && status == 200 && rng.chance(200) {
            // Walk away from the last document while holding it: its lease lapses (unless
            // the history is about to be cut short).
            quiet_after = true;
        }
        let takeover_fence = body.as_ref().and_then(|b| {
            (b["holder"]["id"] == user.as_str())
                .then(|| b["fence"].as_u64())
                .flatten()
        });
        ops.push(Op {
            id,
            user: user.clone(),
            kind,
            resource,
            send,
            recv,
            status,
            takeover_fence,
        });
        tokio::time::sleep(Duration::from_millis(2 + rng.below(18))).await;
    }
    ops
}

/// One fence's worth of grants on one resource.
#[derive(Debug, Clone)]
struct Tenure {
    user: String,
    fence: u64,
    /// Latest moment by which the tenure certainly existed.
    first_seen: u64,
    first_send: u64,
    /// The last grant's send (its renewal happened no earlier) and its response.
    last_send: u64,
    last_recv: u64,
    created_by_takeover: bool,
}

#[derive(Debug, Clone)]
struct Grant {
    resource: u32,
    user: String,
    fence: u64,
    send: u64,
    seen: u64,
    recv: u64,
    takeover: bool,
}

/// What the checker found.
#[derive(Debug, Default)]
struct Report {
    grants: usize,
    tenures: usize,
    by_takeover: usize,
    by_release: usize,
    by_lapse: usize,
    by_data_loss: usize,
    violations: Vec<String>,
}

fn check(ops: &[Op], seen: &[Seen], outage: Outage, lease: Duration) -> Report {
    let mut report = Report::default();
    let lease_us = u64::try_from(lease.as_micros()).unwrap_or(u64::MAX);
    let unrenewed_us = u64::try_from(RECENT_CLAIM_TTL.as_micros()).unwrap_or(u64::MAX);
    let by_id: HashMap<u64, &Op> = ops.iter().map(|op| (op.id, op)).collect();

    let mut grants: Vec<Grant> = Vec::new();
    for s in seen {
        let Some(op) = by_id.get(&s.op) else {
            report
                .violations
                .push(format!("the upstream saw a request nobody sent: {s:?}"));
            continue;
        };
        if s.user != op.user {
            report.violations.push(format!(
                "sent as {} but forwarded as {}: {s:?}",
                op.user, s.user
            ));
        }
        let Some(fence) = s.fence else {
            report
                .violations
                .push(format!("a protected request passed without a fence: {s:?}"));
            continue;
        };
        if s.resource != format!("doc:{}", op.resource) {
            report
                .violations
                .push(format!("wrong resource forwarded: {s:?} for {op:?}"));
        }
        grants.push(Grant {
            resource: op.resource,
            user: s.user.clone(),
            fence,
            send: op.send,
            seen: s.at,
            recv: op.recv,
            takeover: false,
        });
    }
    for op in ops {
        if let (Kind::Takeover, Some(fence)) = (op.kind, op.takeover_fence) {
            grants.push(Grant {
                resource: op.resource,
                user: op.user.clone(),
                fence,
                send: op.send,
                seen: op.recv,
                recv: op.recv,
                takeover: true,
            });
        }
    }
    report.grants = grants.len();

    let mut per_resource: BTreeMap<u32, Vec<Grant>> = BTreeMap::new();
    for g in grants {
        per_resource.entry(g.resource).or_default().push(g);
    }

    for (resource, mut grants) in per_resource {
        // 1. One holder per fence.
        let mut owners: HashMap<u64, &str> = HashMap::new();
        for g in &grants {
            let owner = owners.entry(g.fence).or_insert(&g.user);
            if *owner != g.user {
                report.violations.push(format!(
                    "doc:{resource}: fence {} granted to both {owner} and {}",
                    g.fence, g.user
                ));
            }
        }

        // 2. Fences never go back.
        grants.sort_by_key(|g| g.seen);
        for b in &grants {
            for a in grants.iter().take_while(|a| a.seen < b.send) {
                let stale = b.fence < a.fence || (b.fence == a.fence && a.user != b.user);
                if stale {
                    report.violations.push(format!(
                        "doc:{resource}: {} was granted fence {} after {} had been granted {} \
                         (seen at {} µs, request sent at {} µs)",
                        b.user, b.fence, a.user, a.fence, a.seen, b.send
                    ));
                }
            }
        }

        // 3. No overlap between consecutive tenures.
        let mut tenures: BTreeMap<u64, Tenure> = BTreeMap::new();
        for g in &grants {
            let t = tenures.entry(g.fence).or_insert_with(|| Tenure {
                user: g.user.clone(),
                fence: g.fence,
                first_seen: g.seen,
                first_send: g.send,
                last_send: g.send,
                last_recv: g.recv,
                created_by_takeover: g.takeover,
            });
            if g.send < t.first_send {
                t.first_send = g.send;
                t.created_by_takeover = g.takeover;
            }
            t.first_seen = t.first_seen.min(g.seen);
            if g.send > t.last_send {
                t.last_send = g.send;
                t.last_recv = g.recv;
            }
        }
        report.tenures += tenures.len();
        let tenures: Vec<Tenure> = tenures.into_values().collect();
        for pair in tenures.windows(2) {
            let (t1, t2) = (&pair[0], &pair[1]);
            let on_resource = |op: &&Op| op.resource == resource;
            let lost_takeover = ops.iter().filter(on_resource).any(|op| {
                op.kind == Kind::Takeover
                    && (op.status == 0 || op.status >= 500)
                    && op.send <= t2.first_seen
                    && op.recv >= t1.last_send
            });
            let released = ops.iter().filter(on_resource).any(|op| {
                op.kind == Kind::Release
                    && op.status == 204
                    && op.user == t1.user
                    && op.send >= t1.last_recv
                    && op.send <= t2.first_seen
            });
            let last_renewal = t1.last_send.saturating_sub(unrenewed_us);
            let lapsed = t2.first_seen + CLOCK_SLACK_US >= last_renewal + lease_us;
            let lost = outage.up > 0 && t2.first_seen >= outage.down && t1.first_send <= outage.up;
            if t2.created_by_takeover || lost_takeover {
                report.by_takeover += 1;
            } else if released {
                report.by_release += 1;
            } else if lapsed {
                report.by_lapse += 1;
            } else if lost {
                report.by_data_loss += 1;
            } else {
                report.violations.push(format!(
                    "doc:{resource}: {} (fence {}) was granted while {} (fence {}) still held it: \
                     no release, takeover, lapse or data loss in between ({t1:?} then {t2:?})",
                    t2.user, t2.fence, t1.user, t1.fence
                ));
            }
        }
    }
    report
}

async fn start_upstream(clock: Arc<Clock>) -> (u16, Arc<Recorder>, tokio::task::JoinHandle<()>) {
    let recorder = Arc::new(Recorder {
        clock,
        seen: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .fallback(record)
        .with_state(Arc::clone(&recorder));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, recorder, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_history_with_faults_never_double_grants() {
    let seed = std::env::var("LATCH_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("history seed: {seed} (replay with LATCH_HISTORY_SEED={seed})");

    let clock = Arc::new(Clock(Instant::now()));
    let redis = Arc::new(Mutex::new(RedisServer::start()));
    let url = redis.lock().unwrap().url();
    let (upstream_port, recorder, upstream) = start_upstream(Arc::clone(&clock)).await;
    let mut instances: Vec<Latch> = Vec::new();
    for _ in 0..3 {
        instances.push(start_instance(upstream_port, &url, RULES).await);
    }

    let run = Arc::new(Run {
        clock: Arc::clone(&clock),
        http: reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap(),
        ports: RwLock::new(instances.iter().map(|l| l.port).collect()),
        next_op: AtomicU64::new(1),
        stop: AtomicBool::new(false),
    });
    let started = Instant::now();
    let mut seeds = Rng(seed | 1);
    let clients: Vec<_> = (0..USERS + ADMINS)
        .map(|i| {
            let admin = i >= USERS;
            let user = if admin {
                format!("admin{i}")
            } else {
                format!("user{i}")
            };
            tokio::spawn(client_loop(Arc::clone(&run), user, admin, seeds.next()))
        })
        .collect();

    // The fault schedule.
    let at = |secs: u64| started + Duration::from_secs(secs);
    tokio::time::sleep_until(at(6).into()).await;
    instances[1].kill();
    tokio::time::sleep_until(at(8).into()).await;
    instances[1] = start_instance(upstream_port, &url, RULES).await;
    run.ports.write().unwrap()[1] = instances[1].port;

    tokio::time::sleep_until(at(14).into()).await;
    let down = clock.now();
    let restarting = Arc::clone(&redis);
    tokio::task::spawn_blocking(move || restarting.lock().unwrap().restart())
        .await
        .unwrap();
    let outage = Outage {
        down,
        up: clock.now(),
    };

    tokio::time::sleep_until(at(22).into()).await;
    instances[2].kill();
    tokio::time::sleep_until(at(24).into()).await;
    instances[2] = start_instance(upstream_port, &url, RULES).await;
    run.ports.write().unwrap()[2] = instances[2].port;

    // Run until enough operations and the whole schedule are behind us.
    loop {
        let done = run.next_op.load(Ordering::Relaxed) > MIN_OPS;
        if done && started.elapsed() >= MIN_RUN {
            break;
        }
        assert!(
            started.elapsed() < MAX_RUN,
            "only {} operations after {MAX_RUN:?}",
            run.next_op.load(Ordering::Relaxed) - 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.stop.store(true, Ordering::Relaxed);
    let mut ops = Vec::new();
    for client in clients {
        ops.extend(client.await.unwrap());
    }
    let elapsed = started.elapsed();
    // Let responses still in flight at the upstream land before reading what it saw.
    tokio::time::sleep(Duration::from_millis(200)).await;
    upstream.abort();
    let seen = recorder.seen.lock().unwrap().clone();

    let report = check(&ops, &seen, outage, LEASE);
    let count = |pred: &dyn Fn(&Op) -> bool| ops.iter().filter(|op| pred(op)).count();
    eprintln!(
        "history: {} operations in {elapsed:?}; {} granted, {} denied (423), {} store errors (503), \
         {} without response; {} grants in {} tenures; holder changes by takeover {}, release {}, \
         lapse {}, data loss {}",
        ops.len(),
        count(&|op| op.status == 200 || op.status == 204),
        count(&|op| op.status == 423),
        count(&|op| op.status == 503),
        count(&|op| op.status == 0),
        report.grants,
        report.tenures,
        report.by_takeover,
        report.by_release,
        report.by_lapse,
        report.by_data_loss,
    );
    assert!(
        report.violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        report.violations.len(),
        report
            .violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The run exercised what it is meant to.
    assert!(ops.len() as u64 >= MIN_OPS, "{} operations", ops.len());
    assert!(elapsed < Duration::from_secs(90), "{elapsed:?}");
    assert!(report.tenures >= 100, "{report:?}");
    assert!(
        report.by_takeover > 0,
        "no takeover changed hands: {report:?}"
    );
    assert!(
        report.by_release > 0,
        "no release changed hands: {report:?}"
    );
    assert!(
        report.by_lapse > 0,
        "no lease lapsed between holders: {report:?}"
    );
    // Some resource changed hands across the Redis restart, so check 2 compared fences from
    // before the data loss with fences from after it.
    let sent_at: HashMap<u64, u64> = ops.iter().map(|op| (op.id, op.send)).collect();
    let changed_across_outage = seen.iter().filter(|a| a.at < outage.down).any(|a| {
        seen.iter().any(|b| {
            b.resource == a.resource
                && b.user != a.user
                && sent_at.get(&b.op).is_some_and(|send| *send > outage.up)
        })
    });
    assert!(
        changed_across_outage,
        "no resource changed hands across the Redis restart"
    );
    assert!(
        ops.iter().any(|op| op.status == 0),
        "no request hit a killed instance"
    );
    for latch in &instances {
        assert!(!latch.log().contains("panicked"), "{}", latch.log());
    }
}

/// The checker itself: clean histories pass, and each kind of violation is caught.
mod checker {
    use super::*;

    const S: u64 = 1_000_000;

    fn op(id: u64, user: &str, kind: Kind, send: u64, recv: u64, status: u16) -> Op {
        Op {
            id,
            user: user.to_owned(),
            kind,
            resource: 0,
            send,
            recv,
            status,
            takeover_fence: None,
        }
    }

    fn seen(op: u64, user: &str, fence: u64, at: u64) -> Seen {
        Seen {
            op,
            user: user.to_owned(),
            resource: "doc:0".to_owned(),
            fence: Some(fence),
            at,
        }
    }

    fn run(ops: &[Op], seen: &[Seen]) -> Report {
        check(ops, seen, Outage::default(), LEASE)
    }

    #[test]
    fn a_clean_handover_by_release_passes() {
        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "a", Kind::Release, 20, 30, 204),
            op(3, "b", Kind::Read, 40, 50, 200),
        ];
        let seen = [seen(1, "a", 100, 5), seen(3, "b", 200, 45)];
        let report = run(&ops, &seen);
        assert!(report.violations.is_empty(), "{report:?}");
        assert_eq!((report.tenures, report.by_release), (2, 1));
    }

    #[test]
    fn a_handover_after_the_lease_passes_and_one_before_it_does_not() {
        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "b", Kind::Read, 5 * S + 1, 5 * S + 10, 200),
        ];
        let report = run(&ops, &[seen(1, "a", 100, 5), seen(2, "b", 200, 5 * S + 5)]);
        assert!(report.violations.is_empty(), "{report:?}");
        assert_eq!(report.by_lapse, 1);

        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "b", Kind::Read, 2 * S, 2 * S + 10, 200),
        ];
        let report = run(&ops, &[seen(1, "a", 100, 5), seen(2, "b", 200, 2 * S + 5)]);
        assert_eq!(report.violations.len(), 1, "{report:?}");
        assert!(report.violations[0].contains("still held it"));
    }

    #[test]
    fn a_last_grant_from_recent_claims_may_leave_the_lease_one_ttl_short() {
        // `a`'s last grant at 10 s may have come from the instance's memory, renewing
        // nothing: the store last renewed at 9 s at the earliest, so its lease may end at 14 s.
        let ops = [
            op(1, "a", Kind::Read, 9 * S, 9 * S + 10, 200),
            op(2, "a", Kind::Read, 10 * S, 10 * S + 10, 200),
            op(3, "b", Kind::Read, 14 * S + 1, 14 * S + 10, 200),
        ];
        let seen_a = || vec![seen(1, "a", 100, 9 * S + 5), seen(2, "a", 100, 10 * S + 5)];
        let mut seen_all = seen_a();
        seen_all.push(seen(3, "b", 200, 14 * S + 5));
        let report = run(&ops, &seen_all);
        assert!(report.violations.is_empty(), "{report:?}");
        assert_eq!(report.by_lapse, 1);

        // Before 14 s nothing could have lapsed.
        let mut ops = ops.to_vec();
        ops[2] = op(3, "b", Kind::Read, 13 * S, 13 * S + 10, 200);
        let mut seen_all = seen_a();
        seen_all.push(seen(3, "b", 200, 13 * S + 5));
        let report = run(&ops, &seen_all);
        assert_eq!(report.violations.len(), 1, "{report:?}");
        assert!(report.violations[0].contains("still held it"));
    }

    #[test]
    fn a_release_before_the_last_grant_does_not_count() {
        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "a", Kind::Release, 20, 30, 204),
            op(3, "a", Kind::Read, 40, 50, 200),
            op(4, "b", Kind::Read, 60, 70, 200),
        ];
        let seen = [
            seen(1, "a", 100, 5),
            seen(3, "a", 100, 45),
            seen(4, "b", 200, 65),
        ];
        let report = run(&ops, &seen);
        assert_eq!(report.violations.len(), 1, "{report:?}");
    }

    #[test]
    fn takeovers_and_data_loss_justify_a_change() {
        let mut take = op(2, "admin", Kind::Takeover, 20, 30, 200);
        take.takeover_fence = Some(200);
        let ops = [op(1, "a", Kind::Read, 0, 10, 200), take];
        let report = run(&ops, &[seen(1, "a", 100, 5)]);
        assert!(report.violations.is_empty(), "{report:?}");
        assert_eq!(report.by_takeover, 1);

        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "b", Kind::Read, 2 * S, 2 * S + 10, 200),
        ];
        let seen = [seen(1, "a", 100, 5), seen(2, "b", 200, 2 * S + 5)];
        let outage = Outage {
            down: S,
            up: S + 500,
        };
        let report = check(&ops, &seen, outage, LEASE);
        assert!(report.violations.is_empty(), "{report:?}");
        assert_eq!(report.by_data_loss, 1);
    }

    #[test]
    fn a_fence_going_back_is_caught() {
        // b is granted after the restart with a fence below a's: exactly what fences must
        // never do, data loss or not.
        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "b", Kind::Read, 6 * S, 6 * S + 10, 200),
        ];
        let seen = [seen(1, "a", 500, 5), seen(2, "b", 400, 6 * S + 5)];
        let report = run(&ops, &seen);
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("after a had been granted 500")),
            "{report:?}"
        );
    }

    #[test]
    fn a_stale_holder_granted_after_the_new_one_is_caught() {
        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "a", Kind::Release, 20, 30, 204),
            op(3, "b", Kind::Read, 40, 50, 200),
            op(4, "a", Kind::Write, 60, 70, 200),
        ];
        let seen = [
            seen(1, "a", 100, 5),
            seen(3, "b", 200, 45),
            seen(4, "a", 100, 65),
        ];
        let report = run(&ops, &seen);
        assert!(!report.violations.is_empty(), "{report:?}");
    }

    #[test]
    fn one_fence_for_two_users_is_caught() {
        let ops = [
            op(1, "a", Kind::Read, 0, 10, 200),
            op(2, "b", Kind::Read, 0, 10, 200),
        ];
        let report = run(&ops, &[seen(1, "a", 100, 5), seen(2, "b", 100, 6)]);
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("granted to both")),
            "{report:?}"
        );
    }

    #[test]
    fn requests_the_test_never_sent_or_sent_as_someone_else_are_caught() {
        let ops = [op(1, "a", Kind::Read, 0, 10, 200)];
        let report = run(&ops, &[seen(1, "b", 100, 5), seen(9, "a", 100, 6)]);
        assert_eq!(report.violations.len(), 2, "{report:?}");
    }
}

/// The wait queue's history: FIFO offers and reservations granted to one user only.
mod queue {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use store::{
        ClaimOutcome, ClaimRequest, EventKind, Holder, LockEvent, LockStore, RedisLockStore,
        RedisOptions, ReleaseReason,
    };
    use tests::redis::RedisServer;

    use super::Rng;

    const USERS: usize = 10;
    /// The one person who takes over (as an admin would); everyone else claims and waits.
    const TAKER: usize = 0;
    const RESOURCES: u32 = 2;
    const RUN: Duration = Duration::from_secs(8);
    /// Short, so offers lapse and pass down the line many times in a run.
    const OFFER: Duration = Duration::from_millis(300);
    /// Long: no entry lapses during a run, so every offer must go to the head of the line.
    const ENTRY_TTL: Duration = Duration::from_secs(120);
    const LEASE: Duration = Duration::from_secs(30);

    fn person(i: usize) -> Holder {
        Holder {
            user: format!("u{i}"),
            name: format!("U{i}"),
            session: None,
        }
    }

    fn claim(resource: &str, holder: &Holder) -> ClaimRequest {
        ClaimRequest {
            resource: resource.to_owned(),
            rule: "doc".to_owned(),
            holder: holder.clone(),
            lease: LEASE,
            instance: "history".to_owned(),
            unsafe_method: false,
            max_per_user: None,
        }
    }

    /// What the replay of one resource's events knows.
    #[derive(Default)]
    struct Line {
        waiting: Vec<String>,
        /// The standing offer: owner, until, and whether its owner claimed it already.
        offer: Option<(String, u64, bool)>,
    }

    /// Replays the shared event stream and returns every violation found.
    pub(super) fn check(events: &[LockEvent]) -> Vec<String> {
        let mut lines: HashMap<&str, Line> = HashMap::new();
        let mut problems = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let line = lines.entry(event.resource.as_str()).or_default();
            match &event.kind {
                EventKind::QueueChanged { queue, offered } => {
                    let now: Vec<String> = queue.waiting.iter().map(Holder::owner_key).collect();
                    let offer = queue
                        .offer
                        .as_ref()
                        .map(|o| (o.holder.owner_key(), o.until));
                    if *offered {
                        let head = line.waiting.first();
                        let to = offer.as_ref().map(|o| &o.0);
                        if head.is_none() || head != to {
                            problems.push(format!(
                                "#{i} {}: offered to {to:?}, the head was {head:?}",
                                event.resource
                            ));
                        } else if now.as_slice() != &line.waiting[1..] {
                            problems.push(format!(
                                "#{i} {}: an offer reordered the line {:?} into {now:?}",
                                event.resource, line.waiting
                            ));
                        }
                    } else {
                        // People leave from anywhere and join at the back; a take-over puts
                        // the owner of a standing offer back at the head.
                        let returned = line.offer.as_ref().map(|o| o.0.clone());
                        let kept: Vec<&String> =
                            now.iter().filter(|o| line.waiting.contains(*o)).collect();
                        let stayed: Vec<&String> =
                            line.waiting.iter().filter(|o| now.contains(*o)).collect();
                        let joined_at_back = now
                            .iter()
                            .skip_while(|o| Some(*o) == returned.as_ref())
                            .skip_while(|o| line.waiting.contains(*o))
                            .all(|o| !line.waiting.contains(o));
                        if kept != stayed || !joined_at_back {
                            problems.push(format!(
                                "#{i} {}: the line {:?} became {now:?}",
                                event.resource, line.waiting
                            ));
                        }
                    }
                    let claimed = line
                        .offer
                        .as_ref()
                        .filter(|o| offer.as_ref().is_some_and(|n| n.0 == o.0 && n.1 == o.1))
                        .is_some_and(|o| o.2);
                    line.offer = offer.map(|(owner, until)| (owner, until, claimed));
                    line.waiting = now;
                }
                EventKind::Claimed => {
                    let Some(lock) = &event.lock else { continue };
                    let owner = lock.holder.owner_key();
                    if let Some((reserved_for, until, taken)) = &mut line.offer {
                        // A take-over jumps the line; on a free resource it reads as a
                        // claim, and only the taker takes over.
                        let took_over = owner == person(TAKER).owner_key();
                        if event.at < *until && !took_over && (*reserved_for != owner || *taken) {
                            problems.push(format!(
                                "#{i} {}: granted to {owner} while reserved for {reserved_for}{}",
                                event.resource,
                                if *taken {
                                    ", who had claimed it already"
                                } else {
                                    ""
                                }
                            ));
                        }
                        if *reserved_for == owner {
                            *taken = true;
                        }
                    }
                }
                _ => {}
            }
        }
        problems
    }

    async fn open(url: &str) -> Arc<RedisLockStore> {
        let store = RedisLockStore::open(RedisOptions::from_url(url).expect("a Redis URL"))
            .expect("a store");
        tokio::spawn(Arc::clone(&store).run_listener());
        tokio::spawn(Arc::clone(&store).run_reaper());
        assert!(store.wait_subscribed(Duration::from_secs(5)).await);
        store
    }

    async fn client(stores: Vec<Arc<RedisLockStore>>, me: usize, seed: u64) -> usize {
        let mut rng = Rng(seed | 1);
        let holder = person(me);
        let owner = holder.owner_key();
        let started = Instant::now();
        let mut ops = 0;
        while started.elapsed() < RUN {
            let store = &stores[rng.below(stores.len() as u64) as usize];
            let resource = format!("doc:{}", rng.below(u64::from(RESOURCES)));
            let result = match rng.below(10) {
                0..=2 => store
                    .enqueue(&resource, &holder, ENTRY_TTL, OFFER, 100)
                    .await
                    .map(drop),
                3..=5 => match store.claim(&claim(&resource, &holder)).await {
                    Ok(ClaimOutcome::Claimed(_)) => {
                        let hold = Duration::from_millis(rng.below(60));
                        tokio::time::sleep(hold).await;
                        store
                            .release(&resource, &owner, ReleaseReason::Client)
                            .await
                            .map(drop)
                    }
                    other => other.map(drop),
                },
                6 => store.dequeue(&resource, &owner).await.map(drop),
                7 if me == TAKER => match store.takeover(&claim(&resource, &holder)).await {
                    Ok(_) => store
                        .release(&resource, &owner, ReleaseReason::Client)
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                },
                _ => store.queue(&resource).await.map(drop),
            };
            result.unwrap_or_else(|e| panic!("{owner}: {e}"));
            ops += 1;
            tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
        }
        ops
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offers_go_down_the_line_in_order_and_reserve_for_one() {
        let redis = RedisServer::start();
        let url = redis.url();
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(open(&url).await);
        }
        let mut events = stores[0].subscribe();
        let collect = tokio::spawn(async move {
            let mut seen = Vec::new();
            let until = tokio::time::Instant::now() + RUN + Duration::from_secs(3);
            while let Ok(event) = tokio::time::timeout_at(until, events.recv()).await {
                seen.push(event.expect("the event stream kept up"));
            }
            seen
        });
        let seed = std::env::var("LATCH_HISTORY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(7, |d| d.as_nanos() as u64)
            });
        eprintln!("queue history seed: {seed}");
        let clients: Vec<_> = (0..USERS)
            .map(|me| {
                let stores = stores.clone();
                tokio::spawn(client(stores, me, seed.wrapping_add(me as u64 * 7919)))
            })
            .collect();
        let mut ops = 0;
        for c in clients {
            ops += c.await.expect("a client");
        }
        let events = collect.await.expect("the collector");
        let offers = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::QueueChanged { offered: true, .. }))
            .count();
        eprintln!("{ops} operations, {} events, {offers} offers", events.len());
        assert!(offers >= 20, "too few offers to judge: {offers}");
        let problems = check(&events);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    mod checker {
        use store::{EventKind, Holder, Lock, LockEvent, Offer, QueueState};

        use super::check;

        fn h(id: &str) -> Holder {
            Holder {
                user: id.to_owned(),
                name: id.to_uppercase(),
                session: None,
            }
        }

        fn queue(at: u64, waiting: &[&str], offer: Option<&str>, offered: bool) -> LockEvent {
            LockEvent {
                kind: EventKind::QueueChanged {
                    queue: QueueState {
                        waiting: waiting.iter().map(|w| h(w)).collect(),
                        offer: offer.map(|o| Offer {
                            holder: h(o),
                            until: at + 300,
                        }),
                    },
                    offered,
                },
                resource: "doc:0".to_owned(),
                lock: None,
                previous: None,
                at,
            }
        }

        fn claimed(at: u64, who: &str) -> LockEvent {
            LockEvent {
                kind: EventKind::Claimed,
                resource: "doc:0".to_owned(),
                lock: Some(Lock {
                    resource: "doc:0".to_owned(),
                    rule: "doc".to_owned(),
                    holder: h(who),
                    since: at,
                    expires: at + 30_000,
                    fence: at,
                    instance: "i".to_owned(),
                    active: at,
                }),
                previous: None,
                at,
            }
        }

        #[test]
        fn a_fair_history_passes() {
            let events = [
                queue(1, &["a"], None, false),
                queue(2, &["a", "b"], None, false),
                queue(3, &["b"], Some("a"), true),
                claimed(4, "a"),
                queue(4, &["b"], None, false),
            ];
            assert_eq!(check(&events), Vec::<String>::new());
        }

        #[test]
        fn an_offer_past_the_head_is_caught() {
            let events = [
                queue(1, &["a", "b"], None, false),
                queue(3, &["a"], Some("b"), true),
            ];
            assert_eq!(check(&events).len(), 1);
        }

        #[test]
        fn a_grant_to_someone_else_during_an_offer_is_caught() {
            let events = [
                queue(1, &["a", "b"], None, false),
                queue(3, &["b"], Some("a"), true),
                claimed(4, "b"),
            ];
            assert_eq!(check(&events).len(), 1);
        }

        #[test]
        fn a_reservation_granted_twice_is_caught() {
            let events = [
                queue(1, &["a"], None, false),
                queue(3, &[], Some("a"), true),
                claimed(4, "a"),
                claimed(5, "a"),
            ];
            assert_eq!(check(&events).len(), 1);
        }

        #[test]
        fn a_join_ahead_of_others_is_caught() {
            let events = [
                queue(1, &["a"], None, false),
                queue(2, &["c", "a"], None, false),
            ];
            assert_eq!(check(&events).len(), 1);
        }
    }
}
