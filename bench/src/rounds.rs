//! Bracketed rounds. Each case that is compared with a reference (bare pingora serving the
//! same bytes) runs between two runs of that reference, and its figure for the round is its
//! rate over the mean of those two: a reference, c1, reference, c2, reference, … Drift on this
//! shared machine moves by the second, so a ratio between runs seconds apart is far steadier
//! than one between runs a minute apart. Every round visits every case once, in an order that
//! rotates from round to round. A run during which other programs took a noticeable share of
//! the CPU is repeated (see [`crate::cpu`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cpu;
use crate::stats::median;
use crate::wrk::{self, Load, Options, Sample};

/// One system under one scenario.
pub struct Case {
    /// Shown in progress lines, e.g. `pass-through / latch`.
    pub label: String,
    pub load: Load,
    pub script: PathBuf,
    /// The index of the case this one is compared with, run just before and just after it.
    pub reference: Option<usize>,
}

/// What a case measured, or why it failed.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Every kept run of this case (a reference runs several times a round).
    pub samples: Vec<Sample>,
    /// Per round: this case's rate over the mean rate of its reference's runs just before and
    /// just after it (or the one of them that ran). `None` where the case or both of those did
    /// not run, and for cases without a reference.
    pub bracketed: Vec<Option<f64>>,
    /// Other cases are measured against this one, which is therefore 1× itself.
    pub baseline: bool,
    pub failure: Option<String>,
    /// Runs thrown away because other programs used the CPU meanwhile.
    pub repeated: usize,
    /// Runs kept although other programs still used the CPU after every retry.
    pub disturbed: usize,
}

impl Measured {
    pub fn median_rps(&self) -> Option<f64> {
        median(&self.samples.iter().map(|s| s.rps).collect::<Vec<_>>())
    }

    pub fn median_p50_us(&self) -> Option<f64> {
        median(&self.samples.iter().map(|s| s.p50_us).collect::<Vec<_>>())
    }

    pub fn median_p99_us(&self) -> Option<f64> {
        median(&self.samples.iter().map(|s| s.p99_us).collect::<Vec<_>>())
    }

    /// The bracketed ratio to this case's reference in every round that has one.
    pub fn ratios(&self) -> Vec<f64> {
        self.bracketed.iter().flatten().copied().collect()
    }

    /// The median over rounds of the bracketed ratio to this case's reference; 1 for a
    /// baseline that ran.
    pub fn ratio(&self) -> Option<f64> {
        if self.baseline {
            return (!self.samples.is_empty()).then_some(1.0);
        }
        median(&self.ratios())
    }

    /// Per round where both have one, this case's bracketed ratio divided by `other`'s: how
    /// two cases compare when both were measured against the same reference.
    pub fn ratios_to(&self, other: &Measured) -> Vec<f64> {
        self.bracketed
            .iter()
            .zip(&other.bracketed)
            .filter_map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if *b > 0.0 => Some(a / b),
                _ => None,
            })
            .collect()
    }
}

/// When other programs may take the CPU away from a run.
#[derive(Clone, Copy, Debug)]
pub struct Noise {
    /// Largest share of the machine (0–1) other programs may use during a kept run.
    pub max_foreign: f64,
    /// How often one run is repeated before it is kept anyway (and counted as disturbed).
    pub retries: usize,
}

/// The order of case indices in round `round`, given each case's reference.
///
/// Cases are grouped by reference. Each group runs as `reference, c1, reference, c2, …,
/// reference`; the groups, and the cases within each, rotate by the round number. Cases that
/// neither have a reference nor are one run once each, after the groups.
pub fn plan(references: &[Option<usize>], round: usize) -> Vec<usize> {
    let is_reference = |i: usize| references.contains(&Some(i));
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (case, reference) in references.iter().enumerate() {
        if let Some(r) = *reference {
            match groups.iter_mut().find(|(g, _)| *g == r) {
                Some((_, members)) => members.push(case),
                None => groups.push((r, vec![case])),
            }
        }
    }
    let rotate = |v: &mut Vec<usize>| {
        if !v.is_empty() {
            let by = round % v.len();
            v.rotate_left(by);
        }
    };
    let mut order: Vec<usize> = (0..groups.len()).collect();
    rotate(&mut order);
    let mut steps = Vec::new();
    for g in order {
        let (reference, members) = &mut groups[g];
        rotate(members);
        steps.push(*reference);
        for &case in members.iter() {
            steps.push(case);
            steps.push(*reference);
        }
    }
    steps.extend((0..references.len()).filter(|&i| references[i].is_none() && !is_reference(i)));
    steps
}

/// For each run at position `i` of a round's `runs` (case index, rate if it ran) whose case has
/// a reference: its rate over the mean rate of the nearest runs of that reference before and
/// after it. Only one side counts where the other did not run; none, and no ratio, where
/// neither did.
pub fn brackets(runs: &[(usize, Option<f64>)], references: &[Option<usize>]) -> Vec<(usize, f64)> {
    let nearest = |reference: usize, range: &mut dyn Iterator<Item = usize>| {
        range
            .map(|j| runs[j])
            .find(|(case, _)| *case == reference)
            .and_then(|(_, rate)| rate)
    };
    runs.iter()
        .enumerate()
        .filter_map(|(i, &(case, rate))| {
            let reference = references.get(case).copied().flatten()?;
            let rate = rate?;
            let before = nearest(reference, &mut (0..i).rev());
            let after = nearest(reference, &mut (i + 1..runs.len()));
            let sides: Vec<f64> = [before, after].into_iter().flatten().collect();
            let mean = sides.iter().sum::<f64>() / sides.len() as f64;
            (mean > 0.0).then(|| (case, rate / mean))
        })
        .collect()
}

/// One run, repeated while other programs take more than `noise.max_foreign` of the machine.
/// Returns the sample, how many runs were thrown away, and whether the kept one was disturbed.
async fn clean_run(
    case: &Case,
    options: Options,
    noise: Noise,
) -> Result<(Sample, usize, bool), crate::BenchError> {
    quiet_run(&case.label, noise, || {
        wrk::run(&case.load, &case.script, options)
    })
    .await
}

/// Runs `run` until other programs took at most `noise.max_foreign` of the machine meanwhile,
/// or `noise.retries` runs were thrown away; `label` names it in the progress lines. Returns
/// the kept result, how many runs were thrown away, and whether the kept one was disturbed.
pub async fn quiet_run<T, E, F, Fut>(
    label: &str,
    noise: Noise,
    mut run: F,
) -> Result<(T, usize, bool), E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let cores = cpu::cores();
    let mut thrown = 0;
    loop {
        let before = cpu::sample();
        let start = Instant::now();
        let sample = run().await?;
        let ticks = start.elapsed().as_secs_f64() * cpu::TICKS_PER_SECOND;
        let foreign = match (before, cpu::sample()) {
            (Some(b), Some(a)) => cpu::foreign_share(&b, &a, ticks, cores),
            _ => 0.0,
        };
        if foreign <= noise.max_foreign {
            return Ok((sample, thrown, false));
        }
        if thrown >= noise.retries {
            return Ok((sample, thrown, true));
        }
        thrown += 1;
        eprintln!(
            "  (repeating {label}: other programs used {:.0}% of the CPU)",
            foreign * 100.0
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs `cases` for `rounds` rounds after one short warm-up run each, as [`plan`] orders them.
/// A case whose run fails (wrong status, socket errors) is reported at once on stderr and
/// dropped from later runs; the cases measured against it then get no ratio.
pub async fn measure(
    cases: &[Case],
    rounds: usize,
    options: Options,
    warmup: Duration,
    noise: Noise,
) -> Vec<Measured> {
    let references: Vec<Option<usize>> = cases.iter().map(|c| c.reference).collect();
    let mut measured: Vec<Measured> = (0..cases.len())
        .map(|i| Measured {
            bracketed: vec![None; rounds],
            baseline: references.contains(&Some(i)),
            ..Measured::default()
        })
        .collect();
    let warm = Options {
        duration: warmup,
        ..options
    };
    for (case, m) in cases.iter().zip(measured.iter_mut()) {
        if let Err(e) = wrk::run(&case.load, &case.script, warm).await {
            eprintln!("FAILED  {}: {e}", case.label);
            m.failure = Some(e.to_string());
        }
    }
    for round in 0..rounds {
        let mut runs = Vec::new();
        for i in plan(&references, round) {
            let (case, m) = (&cases[i], &mut measured[i]);
            if m.failure.is_some() {
                runs.push((i, None));
                continue;
            }
            match clean_run(case, options, noise).await {
                Ok((sample, thrown, disturbed)) => {
                    m.repeated += thrown;
                    m.disturbed += usize::from(disturbed);
                    eprintln!(
                        "  round {}/{rounds}  {:<44} {:>9.0} req/s  p99 {:>6.2} ms",
                        round + 1,
                        case.label,
                        sample.rps,
                        sample.p99_us / 1000.0
                    );
                    m.samples.push(sample);
                    runs.push((i, Some(sample.rps)));
                }
                Err(e) => {
                    eprintln!("FAILED  {}: {e}", case.label);
                    m.failure = Some(e.to_string());
                    runs.push((i, None));
                }
            }
        }
        for (case, ratio) in brackets(&runs, &references) {
            measured[case].bracketed[round] = Some(ratio);
        }
    }
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quiet_run_is_kept_at_once_and_a_disturbed_one_after_every_retry() {
        let mut calls = 0;
        let any_load = Noise {
            max_foreign: f64::INFINITY,
            retries: 2,
        };
        let kept = quiet_run("quiet", any_load, || {
            calls += 1;
            std::future::ready(Ok::<_, ()>(calls))
        })
        .await;
        assert_eq!(kept, Ok((1, 0, false)));

        // No share of the CPU is at most a negative one: every run counts as disturbed.
        let mut calls = 0;
        let none = Noise {
            max_foreign: -1.0,
            retries: 2,
        };
        let kept = quiet_run("busy", none, || {
            calls += 1;
            std::future::ready(Ok::<_, ()>(calls))
        })
        .await;
        assert_eq!(kept, Ok((3, 2, true)), "three runs, the last one kept");

        let mut calls = 0;
        let failed = quiet_run("failing", none, || {
            calls += 1;
            std::future::ready(Err::<u32, _>("no figure"))
        })
        .await;
        assert_eq!(failed, Err("no figure"));
        assert_eq!(calls, 1, "a failed run is not repeated");
    }

    fn bracketed(ratios: &[Option<f64>]) -> Measured {
        Measured {
            bracketed: ratios.to_vec(),
            ..Measured::default()
        }
    }

    #[test]
    fn each_case_runs_between_two_runs_of_its_reference() {
        // 0 is the reference of 1 and 2; 3 the reference of 4; 5 stands alone.
        let refs = [None, Some(0), Some(0), None, Some(3), None];
        assert_eq!(plan(&refs, 0), vec![0, 1, 0, 2, 0, 3, 4, 3, 5]);
    }

    #[test]
    fn groups_and_their_members_rotate_from_round_to_round() {
        let refs = [None, Some(0), Some(0), None, Some(3)];
        assert_eq!(plan(&refs, 1), vec![3, 4, 3, 0, 2, 0, 1, 0]);
        assert_eq!(plan(&refs, 2), vec![0, 1, 0, 2, 0, 3, 4, 3]);
        for round in 0..4 {
            let steps = plan(&refs, round);
            for case in [1, 2, 4] {
                assert_eq!(steps.iter().filter(|&&s| s == case).count(), 1);
            }
        }
    }

    #[test]
    fn a_bracket_divides_by_the_mean_of_the_reference_runs_on_either_side() {
        let refs = [None, Some(0), Some(0)];
        let runs = [
            (0, Some(100.0)),
            (1, Some(90.0)),
            (0, Some(80.0)),
            (2, Some(72.0)),
            (0, Some(100.0)),
        ];
        assert_eq!(brackets(&runs, &refs), vec![(1, 1.0), (2, 0.8)]);
    }

    #[test]
    fn a_missing_reference_run_leaves_one_side_or_no_ratio() {
        let refs = [None, Some(0), Some(0)];
        let one_side = [
            (0, Some(100.0)),
            (1, Some(90.0)),
            (0, None),
            (2, Some(50.0)),
            (0, None),
        ];
        assert_eq!(brackets(&one_side, &refs), vec![(1, 0.9)]);
        let failed_case = [(0, Some(100.0)), (1, None), (0, Some(100.0))];
        assert!(brackets(&failed_case, &refs).is_empty());
    }

    #[test]
    fn ratios_are_medians_over_rounds_and_between_cases_pair_rounds() {
        let a = bracketed(&[Some(0.9), Some(0.5), None, Some(0.8)]);
        let b = bracketed(&[Some(1.0), Some(1.0), Some(1.0), Some(0.5)]);
        assert_eq!(a.ratios(), [0.9, 0.5, 0.8]);
        assert_eq!(a.ratio(), Some(0.8));
        // Rounds 0, 1 and 3 pair up.
        assert_eq!(a.ratios_to(&b), [0.9, 0.5, 1.6]);
        assert_eq!(bracketed(&[None, None]).ratio(), None);
    }

    #[test]
    fn a_baseline_that_ran_is_one_times_itself() {
        let mut baseline = bracketed(&[None, None]);
        baseline.baseline = true;
        assert_eq!(baseline.ratio(), None, "it never ran");
        baseline.samples.push(Sample {
            rps: 100.0,
            p50_us: 1.0,
            p99_us: 2.0,
            requests: 300,
        });
        assert_eq!(baseline.ratio(), Some(1.0));
    }
}
