//! Driving h2load (nghttp2's load generator): wrk speaks no HTTP/2, so the HTTP/2 scenario and
//! the HTTP/1.1 run it is compared with both go through h2load, the same client for both.
//! Like a wrk run, an h2load run is only a figure if every response was the one expected and
//! the protocol was the one asked for.

use std::time::Duration;

use crate::BenchError;

/// The protocol h2load negotiates by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    H1,
    H2,
}

impl Protocol {
    /// The name h2load prints after `Application protocol:`.
    pub fn alpn(self) -> &'static str {
        match self {
            Protocol::H1 => "http/1.1",
            Protocol::H2 => "h2",
        }
    }
}

/// h2load's knobs. One stream per connection: both protocols then have the same number of
/// requests in flight, and the figure is the cost of the protocol, not of more concurrency.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub threads: usize,
    pub connections: usize,
    pub duration: Duration,
}

/// One run's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub rps: f64,
    pub requests: u64,
    /// Mean time per request (h2load reports no percentiles).
    pub mean_ms: f64,
}

/// Runs h2load once against `url` (every response must be 2xx).
pub async fn run(url: &str, protocol: Protocol, options: Options) -> Result<Sample, BenchError> {
    let mut cmd = tokio::process::Command::new("h2load");
    cmd.arg(format!("--threads={}", options.threads))
        .arg(format!("--clients={}", options.connections))
        .arg("--max-concurrent-streams=1")
        .arg(format!("--duration={}", options.duration.as_secs().max(1)));
    if protocol == Protocol::H1 {
        cmd.arg("--h1");
    }
    let out = cmd
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| BenchError::io("running h2load", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BenchError::Check(format!(
            "h2load {url}: exited with {}: {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse(&stdout, protocol).map_err(|why| BenchError::Check(format!("h2load {url}: {why}")))
}

/// The bare numbers on the line that starts with `prefix`, in order: words with a unit
/// (`3.00s`, `2xx`, `1.50MB/s`) are skipped, so `37037 2xx, 0 3xx` gives 37037 and 0.
fn numbers_after(stdout: &str, prefix: &str) -> Option<Vec<f64>> {
    let line = stdout.lines().find_map(|l| l.trim().strip_prefix(prefix))?;
    Some(
        line.split([' ', ','])
            .filter_map(|w| w.parse::<f64>().ok())
            .collect(),
    )
}

fn duration_ms(word: &str) -> Option<f64> {
    let split = word.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (value, unit) = word.split_at(split);
    let value: f64 = value.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        _ => return None,
    })
}

/// Reads h2load's summary and judges it: the protocol must be `protocol`, every request done
/// must have succeeded with a 2xx, and none may have failed, errored or timed out.
pub fn parse(stdout: &str, protocol: Protocol) -> Result<Sample, String> {
    let negotiated = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Application protocol:"))
        .map(str::trim)
        .ok_or_else(|| format!("no protocol was negotiated:\n{stdout}"))?;
    if negotiated != protocol.alpn() {
        return Err(format!("negotiated {negotiated}, not {}", protocol.alpn()));
    }
    // `finished in 3.00s, 12345.67 req/s, 1.50MB/s`: the one bare number is the rate.
    let rps = numbers_after(stdout, "finished in")
        .and_then(|n| n.first().copied())
        .ok_or("no req/s on the `finished in` line")?;
    let counts = |prefix: &str, n: usize| -> Result<Vec<u64>, String> {
        let values: Vec<u64> = numbers_after(stdout, prefix)
            .ok_or(format!("no `{prefix}` line"))?
            .into_iter()
            .map(|v| v as u64)
            .collect();
        if values.len() < n {
            return Err(format!(
                "`{prefix}` line has {} numbers, not {n}",
                values.len()
            ));
        }
        Ok(values)
    };
    // total, started, done, succeeded, failed, errored, timeout
    let requests = counts("requests:", 7)?;
    // 2xx, 3xx, 4xx, 5xx
    let statuses = counts("status codes:", 4)?;
    let (done, succeeded) = (requests[2], requests[3]);
    let (failed, errored, timeout) = (requests[4], requests[5], requests[6]);
    if done == 0 || succeeded != done || statuses[0] != done || failed + errored + timeout > 0 {
        return Err(format!(
            "{done} done, {succeeded} succeeded, {} 2xx, {} 3xx, {} 4xx, {} 5xx, \
             {failed} failed, {errored} errored, {timeout} timed out",
            statuses[0], statuses[1], statuses[2], statuses[3]
        ));
    }
    let mean_ms = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("time for request:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(duration_ms)
        .ok_or("no mean on the `time for request` line")?;
    Ok(Sample {
        rps,
        requests: done,
        mean_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// h2load 1.52's summary of a clean HTTP/2 run.
    const CLEAN: &str = "starting benchmark...
Application protocol: h2

finished in 3.00s, 12345.67 req/s, 1.50MB/s
requests: 37037 total, 37101 started, 37037 done, 37037 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 37037 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 4.50MB (4718592) total, 80.35KB (82280) headers (space savings 90.00%), 2.23MB (2343125) data
                     min         max         mean         sd        +/- sd
time for request:      513us     33.48ms      2.79ms      3.75ms    90.15%
time for connect:       31us        32us        32us         0us   100.00%
";

    #[test]
    fn a_clean_run_gives_the_rate_and_the_mean() {
        let sample = parse(CLEAN, Protocol::H2).unwrap();
        assert_eq!(sample.rps, 12345.67);
        assert_eq!(sample.requests, 37037);
        assert_eq!(sample.mean_ms, 2.79);
    }

    #[test]
    fn the_wrong_protocol_fails_the_run() {
        let why = parse(CLEAN, Protocol::H1).unwrap_err();
        assert!(why.contains("negotiated h2, not http/1.1"), "{why}");
        let none = CLEAN.replace("Application protocol: h2\n", "");
        assert!(parse(&none, Protocol::H2).is_err());
    }

    #[test]
    fn one_response_that_is_not_2xx_fails_the_run() {
        let out = CLEAN.replace(
            "status codes: 37037 2xx, 0 3xx, 0 4xx, 0 5xx",
            "status codes: 37036 2xx, 0 3xx, 0 4xx, 1 5xx",
        );
        let why = parse(&out, Protocol::H2).unwrap_err();
        assert!(why.contains("37036 2xx") && why.contains("1 5xx"), "{why}");
    }

    #[test]
    fn failed_or_errored_requests_fail_the_run() {
        let out = CLEAN.replace(
            "37037 done, 37037 succeeded, 0 failed, 0 errored",
            "37037 done, 37030 succeeded, 7 failed, 7 errored",
        );
        assert!(parse(&out, Protocol::H2).is_err());
        let out = CLEAN.replace("0 timeout", "2 timeout");
        assert!(parse(&out, Protocol::H2)
            .unwrap_err()
            .contains("2 timed out"));
    }

    #[test]
    fn a_run_that_did_nothing_is_no_figure() {
        let out = CLEAN
            .replace("37037 done, 37037 succeeded", "0 done, 0 succeeded")
            .replace("37037 2xx", "0 2xx");
        assert!(parse(&out, Protocol::H2).is_err());
    }

    #[test]
    fn durations_are_read_in_their_unit() {
        assert_eq!(duration_ms("513us"), Some(0.513));
        assert_eq!(duration_ms("2.5ms"), Some(2.5));
        assert_eq!(duration_ms("1.2s"), Some(1200.0));
        assert_eq!(duration_ms("3m"), None);
    }
}
