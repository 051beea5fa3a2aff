//! The throughput scenarios, in two families measured in bracketed rounds (see
//! [`crate::rounds`]): the 1.4 KB responses (pass-through, held on each store and key type,
//! denied, and the small page with the banner) and the 100 KB page with and without injection.
//! Every case runs between two runs of bare pingora serving the same bytes to the same
//! request: the held and banner cases carry the user's token, so their bare pingora run sends
//! it too (a proxy in front of the app forwards it whether or not it is Latch), and only what
//! Latch adds is charged to it. Each row carries that ratio and the verdict on its target.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::options::Options;
use crate::process::tree_rss_kib;
use crate::report::{Row, Verdict};
use crate::rounds::{self, Case, Measured};
use crate::site::{self, ASSET, BIG, FRESH, PAGE};
use crate::stats::median;
use crate::systems::{Systems, Tokens};
use crate::wrk::{self, Load};
use crate::BenchError;

/// Runs repeated or kept despite other programs' CPU use, over the whole suite.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) runs: usize,
    pub(crate) repeated: usize,
    pub(crate) disturbed: usize,
}

/// The cases of a family, in the order they were added, with each one's key and the process
/// whose memory its row reports.
pub(crate) struct Family {
    cases: Vec<Case>,
    owners: Vec<(&'static str, u32)>,
    scripts: PathBuf,
}

/// The keys of the reference systems serving one file: the upstream itself, nginx as a proxy
/// (when installed) and bare pingora, the floor every ratio is taken against.
struct Baselines {
    direct: &'static str,
    nginx: &'static str,
    bare: &'static str,
}

const SMALL: Baselines = Baselines {
    direct: "direct",
    nginx: "nginx",
    bare: "bare",
};

const BIG_BASELINES: Baselines = Baselines {
    direct: "direct-big",
    nginx: "nginx-big",
    bare: "bare-big",
};

/// The reference rows of a scenario, in the order the table shows them.
fn baseline_rows(
    scenario: &str,
    systems: &Systems,
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    keys: &Baselines,
) -> Vec<Row> {
    let mut rows = vec![throughput_row(
        scenario,
        "upstream direct",
        results,
        keys.direct,
    )];
    if systems.nginx.is_some() {
        rows.push(throughput_row(scenario, "nginx proxy", results, keys.nginx));
    }
    rows.push(throughput_row(scenario, "bare pingora", results, keys.bare));
    rows
}

impl Family {
    /// An empty family whose wrk scripts go into `scripts`.
    pub(crate) fn new(scripts: &Path) -> Family {
        Family {
            cases: Vec::new(),
            owners: Vec::new(),
            scripts: scripts.to_path_buf(),
        }
    }

    /// Adds the reference systems serving `path` (see [`Baselines`]); `size` starts the labels.
    fn add_baselines(
        &mut self,
        systems: &Systems,
        keys: &Baselines,
        size: &str,
        path: &str,
    ) -> Result<(), BenchError> {
        let url = |port: u16| format!("http://127.0.0.1:{port}{path}");
        let (bare, port) = &systems.bare;
        self.add(
            keys.bare,
            None,
            &format!("{size} / bare pingora"),
            Load::get(url(*port), 200),
            bare.pid(),
        )?;
        self.add(
            keys.direct,
            Some(keys.bare),
            &format!("{size} / upstream direct"),
            Load::get(url(systems.upstream_port), 200),
            systems.upstream.pid(),
        )?;
        if let Some((proc, port)) = &systems.nginx {
            self.add(
                keys.nginx,
                Some(keys.bare),
                &format!("{size} / nginx proxy"),
                Load::get(url(*port), 200),
                proc.pid(),
            )?;
        }
        Ok(())
    }

    /// Adds a case; `reference` names an earlier case it runs between two runs of.
    pub(crate) fn add(
        &mut self,
        key: &'static str,
        reference: Option<&'static str>,
        label: &str,
        load: Load,
        pid: u32,
    ) -> Result<(), BenchError> {
        let script = wrk::write_script(&self.scripts, key, &load)?;
        let reference =
            match reference {
                Some(r) => Some(self.owners.iter().position(|(k, _)| *k == r).ok_or_else(
                    || {
                        BenchError::Check(format!(
                            "{key}: reference {r} is not a case added before it"
                        ))
                    },
                )?),
                None => None,
            };
        self.cases.push(Case {
            label: label.to_string(),
            load,
            script,
            reference,
        });
        self.owners.push((key, pid));
        Ok(())
    }

    /// Runs the rounds; returns each key's measurement and the memory of its process after.
    pub(crate) async fn run(
        self,
        opts: &Options,
        tally: &mut Tally,
    ) -> HashMap<&'static str, (Measured, Option<u64>)> {
        let options = wrk::Options {
            threads: opts.wrk_threads,
            connections: opts.connections,
            duration: Duration::from_secs(opts.seconds),
        };
        let measured = rounds::measure(
            &self.cases,
            opts.rounds,
            options,
            Duration::from_secs(opts.warmup_seconds),
            opts.noise,
        )
        .await;
        for m in &measured {
            tally.repeated += m.repeated;
            tally.disturbed += m.disturbed;
            tally.runs += m.samples.len();
        }
        self.owners
            .iter()
            .zip(measured)
            .map(|(&(key, pid), m)| (key, (m, tree_rss_kib(pid))))
            .collect()
    }
}

/// Fills a row from a measurement; its ratio is to the baseline the case ran bracketed by.
pub(crate) fn throughput_row(
    scenario: &str,
    system: &str,
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    key: &str,
) -> Row {
    let mut row = Row::new(scenario, system);
    let Some((m, rss)) = results.get(key) else {
        row.verdict = Verdict::NotRun("not measured".into());
        return row;
    };
    if let Some(why) = &m.failure {
        row.verdict = Verdict::Failed(why.clone());
        return row;
    }
    row.rps = m.median_rps();
    row.p50_ms = m.median_p50_us().map(|v| v / 1000.0);
    row.p99_ms = m.median_p99_us().map(|v| v / 1000.0);
    row.rss_kib = *rss;
    row.ratio = m.ratio();
    row
}

/// The A/A control: a second bare pingora, identical to the first, measured in the same
/// rounds. Its ratio would be 1.00× on a quiet machine; how far it is from that is the noise
/// every other ratio of the run carries.
fn control_row(scenario: &str, results: &HashMap<&'static str, (Measured, Option<u64>)>) -> Row {
    twin_row(scenario, "bare pingora, twin", results, "bare-twin")
}

/// The A/A control row of case `key`, a twin of its baseline (see [`control_row`]).
pub(crate) fn twin_row(
    scenario: &str,
    system: &str,
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    key: &str,
) -> Row {
    let mut row = throughput_row(scenario, system, results, key);
    row.target = "A/A control".into();
    if matches!(row.verdict, Verdict::Reference) {
        if let Some(ratio) = row.ratio {
            row.verdict = Verdict::Info(format!(
                "identical systems differ by {:.1}% in this run",
                (ratio - 1.0).abs() * 100.0
            ));
        }
    }
    row
}

/// A page served held with the banner, reported (no target) beside bare pingora sending the
/// same request with the user's token.
fn reported_against_bare_with_token(
    scenario: &str,
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    bare_key: &str,
    latch_key: &str,
) -> [Row; 2] {
    let bare = throughput_row(scenario, "bare pingora, with token", results, bare_key);
    let mut latch = throughput_row(scenario, "latch, held + banner", results, latch_key);
    latch.target = "report".into();
    [bare, latch]
}

/// Case `key`'s row, judged as at least `min` times bare pingora: see [`judged`].
pub(crate) fn at_least(
    scenario: &str,
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    key: &str,
    target: &str,
    min: f64,
) -> Row {
    let row = throughput_row(scenario, "latch", results, key);
    judged(row, target, &round_ratios(results, key), min, "")
}

/// Judges `row` by the median of `rounds`, one same-round ratio per round (against bare
/// pingora, or against the case named by `versus`), as at least `min`. The verdict also says
/// in how many rounds the ratio reached `min`: on a noisy host, how firmly a target is met.
fn judged(mut row: Row, target: &str, rounds: &[f64], min: f64, versus: &str) -> Row {
    row.target = target.into();
    if matches!(row.verdict, Verdict::Reference) {
        row.verdict = match median(rounds) {
            Some(r) => {
                let reached = rounds.iter().filter(|&&ratio| ratio >= min).count();
                Verdict::judge(
                    r >= min,
                    format!(
                        "{r:.3}×{versus}; ≥ {min:.2}× in {reached} of {} rounds",
                        rounds.len()
                    ),
                )
            }
            None => Verdict::Failed("no baseline to compare with".into()),
        };
    }
    row
}

/// Case `key`'s ratio to its reference, one per round.
fn round_ratios(results: &HashMap<&'static str, (Measured, Option<u64>)>, key: &str) -> Vec<f64> {
    results
        .get(key)
        .map(|(m, _)| m.ratios())
        .unwrap_or_default()
}

/// How case `a` compares with case `b`, both bracketed by the same baseline: per round, their
/// ratios to it divided.
pub(crate) fn relative_rounds(
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    a: &str,
    b: &str,
) -> Vec<f64> {
    match (results.get(a), results.get(b)) {
        (Some((ma, _)), Some((mb, _))) => ma.ratios_to(mb),
        _ => Vec::new(),
    }
}

/// The median over rounds of [`relative_rounds`].
pub(crate) fn relative_ratio(
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    a: &str,
    b: &str,
) -> Option<f64> {
    median(&relative_rounds(results, a, b))
}

pub(crate) async fn small_family(
    opts: &Options,
    systems: &Systems,
    tokens: &Tokens,
    scripts: &Path,
    tally: &mut Tally,
) -> Result<Vec<Row>, BenchError> {
    let mut family = Family::new(scripts);
    let asset = site::path("", ASSET);
    let held = site::path("held", ASSET);
    family.add_baselines(systems, &SMALL, "1.4 KB", &asset)?;
    let (bare, bare_port) = &systems.bare;
    let bare_url = |path: &str| format!("http://127.0.0.1:{bare_port}{path}");
    let (twin, twin_port) = &systems.bare_twin;
    family.add(
        "bare-twin",
        Some(SMALL.bare),
        "1.4 KB / bare pingora, twin",
        Load::get(format!("http://127.0.0.1:{twin_port}{asset}"), 200),
        twin.pid(),
    )?;
    let latch = &systems.latch;
    let pid = latch.proc.pid();
    family.add(
        "pass",
        Some(SMALL.bare),
        "pass-through / latch",
        Load::get(latch.url(&asset), 200),
        pid,
    )?;
    // The held cases' reference: bare pingora, the same URL and the same token.
    family.add(
        "bare-held",
        None,
        "1.4 KB, with token / bare pingora",
        Load::get(bare_url(&held), 200).bearer(&tokens.alice),
        bare.pid(),
    )?;
    family.add(
        "held",
        Some("bare-held"),
        "held, memory / latch",
        Load::get(latch.url(&held), 200).bearer(&tokens.alice),
        pid,
    )?;
    if let Ok(redis) = &systems.latch_redis {
        family.add(
            "held-redis",
            Some("bare-held"),
            "held, Redis / latch",
            Load::get(redis.url(&held), 200).bearer(&tokens.alice),
            redis.proc.pid(),
        )?;
    }
    family.add(
        "denied",
        Some(SMALL.bare),
        "denied 423 / latch",
        Load::get(latch.url(&site::path("denied", ASSET)), 423).bearer(&tokens.alice),
        pid,
    )?;
    if let (Ok((l, _)), Ok(token)) = (&systems.latch_rs, &tokens.alice_rs) {
        family.add(
            "held-rs",
            Some("bare-held"),
            "held, RS256 / latch",
            Load::get(l.url(&held), 200).bearer(token),
            l.proc.pid(),
        )?;
    }
    if let (Ok((l, _)), Ok(token)) = (&systems.latch_es, &tokens.alice_es) {
        family.add(
            "held-es",
            Some("bare-held"),
            "held, ES256 / latch",
            Load::get(l.url(&held), 200).bearer(token),
            l.proc.pid(),
        )?;
    }
    let page = site::path("held", PAGE);
    family.add(
        "bare-page",
        None,
        "1.4 KB HTML, with token / bare pingora",
        Load::get(bare_url(&page), 200).bearer(&tokens.alice),
        bare.pid(),
    )?;
    family.add(
        "held-page",
        Some("bare-page"),
        "1.4 KB HTML, held + banner / latch",
        Load::get(latch.url(&page), 200).bearer(&tokens.alice),
        pid,
    )?;

    let r = family.run(opts, tally).await;
    let pass_s = "pass-through (no rule), 1.4 KB";
    let mut rows = baseline_rows(pass_s, systems, &r, &SMALL);
    rows.push(control_row(pass_s, &r));
    rows.push(at_least(pass_s, &r, "pass", "≥ 0.95× bare", 0.95));

    let held_s = "lock held by requester, memory, 1.4 KB";
    rows.push(throughput_row(
        held_s,
        "bare pingora, with token",
        &r,
        "bare-held",
    ));
    rows.push(at_least(held_s, &r, "held", "≥ 0.90× bare", 0.90));

    let redis_s = "lock held by requester, Redis, 1.4 KB";
    match &systems.latch_redis {
        Ok(_) => {
            rows.push(at_least(redis_s, &r, "held-redis", "≥ 0.75× bare", 0.75));
        }
        Err(why) => rows.push(Row::not_run(redis_s, "latch", "≥ 0.75× bare", why)),
    }

    let row = throughput_row("denied: 423 from the proxy", "latch", &r, "denied");
    let vs_pass = relative_rounds(&r, "denied", "pass");
    let target = "not slower than pass-through";
    rows.push(judged(row, target, &vs_pass, 1.0, " pass-through"));

    for (key, alg, latch) in [
        ("held-rs", "RS256", systems.latch_rs.as_ref().map(|_| ())),
        ("held-es", "ES256", systems.latch_es.as_ref().map(|_| ())),
    ] {
        let scenario = format!("lock held, {alg} token (vs HS256)");
        match latch {
            Ok(()) => {
                let mut row = throughput_row(&scenario, "latch", &r, key);
                row.target = "report".into();
                if matches!(row.verdict, Verdict::Reference) {
                    row.verdict = Verdict::Info(match relative_ratio(&r, key, "held") {
                        Some(v) => format!("{v:.2}× HS256"),
                        None => "no HS256 figure".into(),
                    });
                }
                rows.push(row);
            }
            Err(why) => rows.push(Row::not_run(&scenario, "latch", "report", why)),
        }
    }

    rows.extend(reported_against_bare_with_token(
        "1.4 KB HTML page",
        &r,
        "bare-page",
        "held-page",
    ));
    Ok(rows)
}

pub(crate) async fn html_family(
    opts: &Options,
    systems: &Systems,
    tokens: &Tokens,
    scripts: &Path,
    tally: &mut Tally,
) -> Result<Vec<Row>, BenchError> {
    let mut family = Family::new(scripts);
    family.add_baselines(systems, &BIG_BASELINES, "100 KB", &site::path("", BIG))?;
    // The held cases' reference: bare pingora, the same page and the same token.
    let (bare, bare_port) = &systems.bare;
    let held_big = site::path("held", BIG);
    family.add(
        "bare-big-held",
        None,
        "100 KB, with token / bare pingora",
        Load::get(format!("http://127.0.0.1:{bare_port}{held_big}"), 200).bearer(&tokens.alice),
        bare.pid(),
    )?;
    let latch = &systems.latch;
    family.add(
        "plain-big",
        Some("bare-big-held"),
        "100 KB, held, inject=false / latch",
        Load::get(latch.url(&site::path("plain", BIG)), 200).bearer(&tokens.alice),
        latch.proc.pid(),
    )?;
    family.add(
        "inject-big",
        Some("bare-big-held"),
        "100 KB, held + banner / latch",
        Load::get(latch.url(&held_big), 200).bearer(&tokens.alice),
        latch.proc.pid(),
    )?;
    // A head that is new on every request: the banner cannot reuse where it went last time.
    let held_fresh = site::path("held", FRESH);
    family.add(
        "bare-fresh-held",
        None,
        "100 KB, new head, with token / bare pingora",
        Load::get(format!("http://127.0.0.1:{bare_port}{held_fresh}"), 200).bearer(&tokens.alice),
        bare.pid(),
    )?;
    family.add(
        "inject-fresh",
        Some("bare-fresh-held"),
        "100 KB, new head, held + banner / latch",
        Load::get(latch.url(&held_fresh), 200).bearer(&tokens.alice),
        latch.proc.pid(),
    )?;
    let r = family.run(opts, tally).await;
    let s = "100 KB HTML page";
    let mut rows = baseline_rows(s, systems, &r, &BIG_BASELINES);
    rows.push(throughput_row(
        s,
        "bare pingora, with token",
        &r,
        "bare-big-held",
    ));
    rows.push(throughput_row(
        s,
        "latch, held, inject=false",
        &r,
        "plain-big",
    ));
    let row = throughput_row(s, "latch, held + banner", &r, "inject-big");
    let rounds = round_ratios(&r, "inject-big");
    rows.push(judged(row, "≥ 0.85× bare", &rounds, 0.85, ""));
    let mut cost = Row::new(
        "100 KB HTML: injection cost",
        "latch, banner vs inject=false",
    );
    cost.target = "≤ 15% slower".into();
    cost.verdict = match relative_ratio(&r, "inject-big", "plain-big") {
        Some(v) => Verdict::judge(v >= 0.85, format!("{:.0}% slower", (1.0 - v) * 100.0)),
        None => Verdict::Failed("a case failed; see above".into()),
    };
    rows.push(cost);
    rows.extend(reported_against_bare_with_token(
        "100 KB HTML page, head new on every request",
        &r,
        "bare-fresh-held",
        "inject-fresh",
    ));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrk::Sample;

    /// A case's runs at `rates`, and its bracketed ratios per round.
    fn measured(rates: &[f64], bracketed: &[f64]) -> Measured {
        Measured {
            samples: rates
                .iter()
                .map(|&rps| Sample {
                    rps,
                    p50_us: 1000.0,
                    p99_us: 3000.0,
                    requests: 1,
                })
                .collect(),
            bracketed: bracketed.iter().map(|&r| Some(r)).collect(),
            ..Measured::default()
        }
    }

    fn results() -> HashMap<&'static str, (Measured, Option<u64>)> {
        let mut failed = measured(&[], &[]);
        failed.failure = Some("3 responses were 502".into());
        let mut bare = measured(&[100.0, 200.0, 100.0, 120.0], &[]);
        bare.baseline = true;
        HashMap::from([
            ("bare", (bare, Some(2048))),
            (
                "latch",
                (measured(&[95.0, 180.0, 90.0], &[0.92, 0.9, 0.85]), None),
            ),
            ("slower", (measured(&[80.0], &[0.46, 0.6, 0.85]), None)),
            (
                "bare-twin",
                (measured(&[104.0, 186.0, 103.0], &[1.04, 0.93, 1.03]), None),
            ),
            ("broken", (failed, None)),
        ])
    }

    #[test]
    fn a_row_carries_medians_and_the_bracketed_ratio() {
        let row = throughput_row("s", "latch", &results(), "latch");
        assert_eq!(row.rps, Some(95.0));
        assert_eq!(row.ratio, Some(0.9));
        assert_eq!(row.p50_ms, Some(1.0));
        assert_eq!(row.p99_ms, Some(3.0));
        assert_eq!(row.verdict, Verdict::Reference);
    }

    #[test]
    fn a_reported_page_comes_with_its_bare_reference_and_no_target() {
        let [bare, latch] = reported_against_bare_with_token("page", &results(), "bare", "latch");
        assert_eq!(bare.system, "bare pingora, with token");
        assert_eq!(bare.ratio, Some(1.0));
        assert_eq!(latch.system, "latch, held + banner");
        assert_eq!(latch.ratio, Some(0.9));
        assert_eq!(latch.target, "report");
        assert_eq!(latch.scenario, "page");
    }

    #[test]
    fn the_baseline_row_is_one_and_its_rate_the_median_of_all_its_runs() {
        let row = throughput_row("s", "bare pingora", &results(), "bare");
        assert_eq!(row.ratio, Some(1.0));
        assert_eq!(row.rps, Some(110.0));
        assert_eq!(row.rss_kib, Some(2048));
    }

    #[test]
    fn two_cases_compare_round_by_round_through_their_baseline() {
        // Per round: 0.46 / 0.92, 0.6 / 0.9, 0.85 / 0.85.
        let r = relative_ratio(&results(), "slower", "latch").unwrap();
        assert!((r - 2.0 / 3.0).abs() < 1e-9, "{r}");
        assert_eq!(relative_ratio(&results(), "slower", "missing"), None);
    }

    #[test]
    fn a_failed_case_fails_its_row_whatever_the_target() {
        let row = throughput_row("s", "latch", &results(), "broken");
        assert!(matches!(row.verdict, Verdict::Failed(ref why) if why.contains("502")));
        let judged = judged(row, "≥ 0.9×", &[2.0], 0.9, "");
        assert!(matches!(judged.verdict, Verdict::Failed(_)));
        assert!(matches!(
            at_least("s", &results(), "broken", "≥ 0.9×", 0.9).verdict,
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn the_control_row_reports_how_far_the_twin_is_from_the_baseline() {
        let row = control_row("s", &results());
        // Per-round ratios 1.04, 0.93, 1.03: the median is 1.03.
        assert_eq!(row.ratio, Some(1.03));
        assert_eq!(row.target, "A/A control");
        assert_eq!(
            row.verdict,
            Verdict::Info("identical systems differ by 3.0% in this run".into())
        );
        let mut missing = results();
        missing.remove("bare-twin");
        assert!(matches!(
            control_row("s", &missing).verdict,
            Verdict::NotRun(_)
        ));
    }

    #[test]
    fn targets_are_met_at_the_threshold_and_missed_below_it() {
        let row = || throughput_row("s", "latch", &results(), "latch");
        assert!(matches!(
            judged(row(), "t", &[0.9], 0.9, "").verdict,
            Verdict::Met(_)
        ));
        assert!(matches!(
            judged(row(), "t", &[0.899], 0.9, "").verdict,
            Verdict::Missed(_)
        ));
        assert!(matches!(
            judged(row(), "t", &[], 0.9, "").verdict,
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn a_verdict_is_the_median_and_counts_the_rounds_that_reached_the_target() {
        let row = || throughput_row("s", "latch", &results(), "latch");
        assert_eq!(round_ratios(&results(), "latch"), [0.92, 0.9, 0.85]);
        let met = at_least("s", &results(), "latch", "≥ 0.90×", 0.9);
        assert_eq!(met.ratio, Some(0.9));
        assert_eq!(met.target, "≥ 0.90×");
        assert_eq!(
            met.verdict,
            Verdict::Met("0.900×; ≥ 0.90× in 2 of 3 rounds".into())
        );
        assert_eq!(
            at_least("s", &results(), "latch", "≥ 0.91×", 0.91).verdict,
            Verdict::Missed("0.900×; ≥ 0.91× in 1 of 3 rounds".into())
        );
        let slower = relative_rounds(&results(), "slower", "latch");
        assert_eq!(slower.len(), 3);
        assert_eq!(
            judged(row(), "t", &slower, 0.6, " latch").verdict,
            Verdict::Met("0.667× latch; ≥ 0.60× in 2 of 3 rounds".into())
        );
        assert!(round_ratios(&results(), "missing").is_empty());
        assert!(relative_rounds(&results(), "slower", "missing").is_empty());
    }
}
