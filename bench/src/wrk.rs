//! Driving wrk: one timed run against one URL, with a Lua script that counts every response's
//! status, so a run is only a figure if every response was the one expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::BenchError;

/// Marks the line the script's `done` hook prints.
const RESULT_TAG: &str = "LATCH_BENCH ";

/// What to request, and the status every response must have.
#[derive(Clone, Debug)]
pub struct Load {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub expect: u16,
}

impl Load {
    pub fn get(url: String, expect: u16) -> Load {
        Load {
            url,
            headers: Vec::new(),
            expect,
        }
    }

    /// Sends `Cookie: {name}={value}` on every request.
    pub fn cookie(mut self, name: &str, value: &str) -> Load {
        self.headers
            .push(("Cookie".into(), format!("{name}={value}")));
        self
    }

    /// Sends `Authorization: Bearer {token}` on every request.
    pub fn bearer(mut self, token: &str) -> Load {
        self.headers
            .push(("Authorization".into(), format!("Bearer {token}")));
        self
    }
}

/// wrk's knobs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub threads: usize,
    pub connections: usize,
    pub duration: Duration,
}

/// One run's outcome.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
}

#[derive(Deserialize)]
struct Raw {
    requests: f64,
    duration_us: f64,
    connect: f64,
    read: f64,
    write: f64,
    timeout: f64,
    p50_us: f64,
    p99_us: f64,
    statuses: BTreeMap<String, f64>,
}

fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Lua script for `load`. Headers are set once in the request template (no per-request
/// Lua), and the `response` hook only counts statuses; `done` merges the threads' counts and
/// prints one JSON line.
pub fn script(load: &Load) -> String {
    let mut lua = String::from("wrk.method = \"GET\"\n");
    for (name, value) in &load.headers {
        lua.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            lua_string(name),
            lua_string(value)
        ));
    }
    lua.push_str(
        r#"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d":%.0f', code, n)
  end
  local e = summary.errors
  io.write(string.format(
    'LATCH_BENCH {"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,'
      .. '"timeout":%.0f,"p50_us":%.0f,"p99_us":%.0f,"statuses":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ",")))
end
"#,
    );
    lua
}

/// Writes `load`'s script into `dir` as `{name}.lua`.
pub fn write_script(dir: &Path, name: &str, load: &Load) -> Result<PathBuf, BenchError> {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script(load))
        .map_err(|e| BenchError::io(path.display().to_string(), e))?;
    Ok(path)
}

/// Runs wrk once and checks every response.
pub async fn run(load: &Load, script: &Path, options: Options) -> Result<Sample, BenchError> {
    let out = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", options.threads))
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{}s", options.duration.as_secs().max(1)))
        .arg("-s")
        .arg(script)
        .arg(&load.url)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| BenchError::io("running wrk", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BenchError::Wrk {
            url: load.url.clone(),
            reason: format!(
                "exited with {}: {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    parse(&stdout, load)
}

/// Reads the script's result line and judges it.
pub fn parse(stdout: &str, load: &Load) -> Result<Sample, BenchError> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_TAG))
        .ok_or_else(|| BenchError::Wrk {
            url: load.url.clone(),
            reason: format!("no result line in its output:\n{stdout}"),
        })?;
    let raw: Raw = serde_json::from_str(line).map_err(|e| BenchError::Wrk {
        url: load.url.clone(),
        reason: format!("unreadable result line ({e}): {line}"),
    })?;
    let total = raw.requests as u64;
    let counted: f64 = raw.statuses.values().sum();
    let expected = raw
        .statuses
        .get(&load.expect.to_string())
        .copied()
        .unwrap_or(0.0) as u64;
    let seen = raw
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if total == 0 || expected != total || counted as u64 != total {
        return Err(BenchError::Status {
            url: load.url.clone(),
            expected: load.expect,
            unexpected: total
                .saturating_sub(expected)
                .max(counted as u64 - expected),
            total,
            seen: if seen.is_empty() { "none".into() } else { seen },
        });
    }
    let errors = raw.connect + raw.read + raw.write + raw.timeout;
    if errors > 0.0 {
        return Err(BenchError::SocketErrors {
            url: load.url.clone(),
            errors: errors as u64,
            detail: format!(
                "connect {}, read {}, write {}, timeout {}",
                raw.connect, raw.read, raw.write, raw.timeout
            ),
        });
    }
    let seconds = raw.duration_us / 1e6;
    Ok(Sample {
        rps: if seconds > 0.0 {
            raw.requests / seconds
        } else {
            0.0
        },
        p50_us: raw.p50_us,
        p99_us: raw.p99_us,
        requests: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load() -> Load {
        Load::get("http://127.0.0.1:1/x".into(), 200)
    }

    #[test]
    fn script_sets_headers_once_and_escapes_them() {
        let lua = script(&load().bearer("a\"b"));
        assert!(lua.contains("wrk.headers[\"Authorization\"] = \"Bearer a\\\"b\""));
        assert!(!lua.contains("function request"), "no per-request Lua");
    }

    #[test]
    fn a_clean_run_gives_the_rate_and_latencies() {
        let out = "Running 5s test\nLATCH_BENCH {\"requests\":1000,\"duration_us\":2000000,\"connect\":0,\
                   \"read\":0,\"write\":0,\"timeout\":0,\"p50_us\":800,\"p99_us\":3000,\"statuses\":{\"200\":1000}}\n";
        let sample = parse(out, &load()).unwrap();
        assert_eq!(sample.rps, 500.0);
        assert_eq!(sample.p50_us, 800.0);
        assert_eq!(sample.p99_us, 3000.0);
        assert_eq!(sample.requests, 1000);
    }

    #[test]
    fn one_wrong_status_fails_the_run() {
        let out = "LATCH_BENCH {\"requests\":1000,\"duration_us\":2000000,\"connect\":0,\"read\":0,\
                   \"write\":0,\"timeout\":0,\"p50_us\":1,\"p99_us\":1,\"statuses\":{\"200\":999,\"502\":1}}";
        match parse(out, &load()) {
            Err(BenchError::Status {
                unexpected, total, ..
            }) => {
                assert_eq!((unexpected, total), (1, 1000));
            }
            other => panic!("expected a status failure, got {other:?}"),
        }
    }

    #[test]
    fn uncounted_responses_fail_the_run() {
        let out =
            "LATCH_BENCH {\"requests\":1000,\"duration_us\":2000000,\"connect\":0,\"read\":0,\
                   \"write\":0,\"timeout\":0,\"p50_us\":1,\"p99_us\":1,\"statuses\":{}}";
        assert!(matches!(
            parse(out, &load()),
            Err(BenchError::Status { .. })
        ));
    }

    #[test]
    fn socket_errors_fail_the_run() {
        let out = "LATCH_BENCH {\"requests\":10,\"duration_us\":1000000,\"connect\":0,\"read\":3,\
                   \"write\":0,\"timeout\":0,\"p50_us\":1,\"p99_us\":1,\"statuses\":{\"423\":10}}";
        let mut l = load();
        l.expect = 423;
        assert!(matches!(
            parse(out, &l),
            Err(BenchError::SocketErrors { errors: 3, .. })
        ));
    }
}
