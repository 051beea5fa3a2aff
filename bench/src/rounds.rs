//! Alternating rounds: every case of a family runs once per round, in an order that rotates
//! from round to round, so slow drift (thermal, neighbours, page cache) lands on every system
//! alike, and ratios are taken between runs of the same round. A run during which other
//! programs took a noticeable share of the CPU is repeated (see [`crate::cpu`]).

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
}

/// What a case measured: one sample per round (`None` where it did not run), or why it failed.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub rounds: Vec<Option<Sample>>,
    pub failure: Option<String>,
    /// Runs thrown away because other programs used the CPU meanwhile.
    pub repeated: usize,
    /// Rounds kept although other programs still used the CPU after every retry.
    pub disturbed: usize,
}

impl Measured {
    fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.rounds.iter().flatten()
    }

    pub fn median_rps(&self) -> Option<f64> {
        median(&self.samples().map(|s| s.rps).collect::<Vec<_>>())
    }

    pub fn median_p50_us(&self) -> Option<f64> {
        median(&self.samples().map(|s| s.p50_us).collect::<Vec<_>>())
    }

    pub fn median_p99_us(&self) -> Option<f64> {
        median(&self.samples().map(|s| s.p99_us).collect::<Vec<_>>())
    }

    /// The median over rounds of this case's rate divided by `other`'s in the same round.
    pub fn ratio_to(&self, other: &Measured) -> Option<f64> {
        let ratios: Vec<f64> = self
            .rounds
            .iter()
            .zip(&other.rounds)
            .filter_map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if b.rps > 0.0 => Some(a.rps / b.rps),
                _ => None,
            })
            .collect();
        median(&ratios)
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

/// The order of case indices in round `round`: a rotation by the round number.
pub fn order(cases: usize, round: usize) -> Vec<usize> {
    (0..cases).map(|i| (i + round) % cases.max(1)).collect()
}

/// One run, repeated while other programs take more than `noise.max_foreign` of the machine.
/// Returns the sample, how many runs were thrown away, and whether the kept one was disturbed.
async fn clean_run(
    case: &Case,
    options: Options,
    noise: Noise,
) -> Result<(Sample, usize, bool), crate::BenchError> {
    let cores = cpu::cores();
    let mut thrown = 0;
    loop {
        let before = cpu::sample();
        let start = Instant::now();
        let sample = wrk::run(&case.load, &case.script, options).await?;
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
            "  (repeating {}: other programs used {:.0}% of the CPU)",
            case.label,
            foreign * 100.0
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs `cases` for `rounds` rounds after one short warm-up run each. A case whose run fails
/// (wrong status, socket errors) is reported at once on stderr and dropped from later rounds.
pub async fn measure(
    cases: &[Case],
    rounds: usize,
    options: Options,
    warmup: Duration,
    noise: Noise,
) -> Vec<Measured> {
    let mut measured = vec![
        Measured {
            rounds: vec![None; rounds],
            ..Measured::default()
        };
        cases.len()
    ];
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
        for i in order(cases.len(), round) {
            let (case, m) = (&cases[i], &mut measured[i]);
            if m.failure.is_some() {
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
                    m.rounds[round] = Some(sample);
                }
                Err(e) => {
                    eprintln!("FAILED  {}: {e}", case.label);
                    m.failure = Some(e.to_string());
                }
            }
        }
    }
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rps: f64) -> Option<Sample> {
        Some(Sample {
            rps,
            p50_us: 1.0,
            p99_us: 2.0,
            requests: 1,
        })
    }

    #[test]
    fn every_round_visits_every_case_once_starting_elsewhere() {
        assert_eq!(order(3, 0), vec![0, 1, 2]);
        assert_eq!(order(3, 1), vec![1, 2, 0]);
        assert_eq!(order(3, 5), vec![2, 0, 1]);
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        let a = Measured {
            rounds: vec![sample(90.0), sample(50.0), None, sample(80.0)],
            ..Measured::default()
        };
        let b = Measured {
            rounds: vec![sample(100.0), sample(100.0), sample(100.0), sample(100.0)],
            ..Measured::default()
        };
        // Rounds 0, 1 and 3 pair up: ratios 0.9, 0.5, 0.8.
        assert_eq!(a.ratio_to(&b), Some(0.8));
        assert_eq!(a.median_rps(), Some(80.0));
    }
}
