//! Child processes of a run: started with their output in a log file, stopped when dropped,
//! and measured through `/proc`.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::BenchError;

/// How long a server gets to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a short command to completion, its output discarded; `failed` says what went wrong
/// when it exits unsuccessfully.
pub fn run_quietly(mut cmd: Command, failed: impl FnOnce() -> String) -> Result<(), BenchError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .map_err(|e| BenchError::io(format!("running {program}"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Check(failed()))
    }
}

/// A port nothing listens on right now (the usual race with other programs is accepted).
pub fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::io("picking a free port", e))
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Which CPUs the systems under test and the load generator run on.
///
/// Left to the scheduler, a 2-core machine places wrk's and the proxy's threads differently
/// from run to run, and the same system measures anywhere between one and two times its rate.
/// With the load generator on its own core and every server on the others, runs repeat within
/// a few percent, and every proxy gets the same share of the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cpus {
    /// `taskset -c` list for the servers; `None` leaves them to the scheduler.
    pub servers: Option<String>,
    /// `taskset -c` list for this process and wrk.
    pub load: Option<String>,
}

impl Cpus {
    /// The last core for the load generator, the others for the servers. Unpinned on a single
    /// core or without `taskset`.
    pub fn split(cores: usize) -> Cpus {
        if cores < 2 || !installed("taskset") {
            return Cpus::default();
        }
        let servers = if cores == 2 {
            "0".to_string()
        } else {
            format!("0-{}", cores - 2)
        };
        Cpus {
            servers: Some(servers),
            load: Some((cores - 1).to_string()),
        }
    }

    /// How many CPUs the servers get (`fallback` when unpinned).
    pub fn server_count(&self, fallback: usize) -> usize {
        let Some(list) = &self.servers else {
            return fallback;
        };
        list.split(',')
            .map(|part| match part.split_once('-') {
                Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                    (Ok(a), Ok(b)) if b >= a => b - a + 1,
                    _ => 1,
                },
                None => 1,
            })
            .sum()
    }

    /// A command that runs `program` on the servers' CPUs.
    pub fn server_command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.servers {
            Some(list) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(list).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Moves every thread of this process to the load generator's CPUs; threads and children
    /// started later inherit it. Call it before any runtime starts its threads.
    pub fn pin_self_to_load(&self) -> Result<(), BenchError> {
        let Some(list) = &self.load else {
            return Ok(());
        };
        let mut taskset = Command::new("taskset");
        taskset
            .args(["-a", "-p", "-c", list])
            .arg(std::process::id().to_string());
        run_quietly(taskset, || {
            format!("taskset could not pin this process to CPU {list}")
        })
    }
}

/// A running child. Dropping it stops it: SIGTERM first, so that nginx takes its workers
/// down with it, then SIGKILL if it lingers.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, BenchError> {
        let out = File::create(log).map_err(|e| BenchError::io(log.display().to_string(), e))?;
        let err = out
            .try_clone()
            .map_err(|e| BenchError::io(log.display().to_string(), e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| BenchError::io(format!("starting {name} ({cmd:?})"), e))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the process wrote.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until every port accepts connections, failing early if the process exits.
    pub fn wait_listening(&mut self, ports: &[u16]) -> Result<(), BenchError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Exited {
                    name: self.name.clone(),
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if ports
                .iter()
                .all(|p| TcpStream::connect(loopback(*p)).is_ok())
            {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(BenchError::NotReady {
                    name: self.name.clone(),
                    waited: START_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory of the process and its direct children (nginx's workers), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        tree_rss_kib(self.pid())
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmRSS` from `/proc/<pid>/status`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `VmRSS` of `pid` plus that of its direct children, in KiB.
pub fn tree_rss_kib(pid: u32) -> Option<u64> {
    let own = rss_kib(pid)?;
    Some(own + children(pid).into_iter().filter_map(rss_kib).sum::<u64>())
}

/// Direct children of `pid`, found through each process's parent in `/proc/<pid>/stat`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| parent(*candidate) == Some(pid))
        .collect()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; fields after it are plain.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Is `program` on the PATH?
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_core_goes_to_the_load_generator() {
        if !installed("taskset") {
            assert_eq!(Cpus::split(2), Cpus::default());
            return;
        }
        let two = Cpus::split(2);
        assert_eq!(
            (two.servers.as_deref(), two.load.as_deref()),
            (Some("0"), Some("1"))
        );
        let eight = Cpus::split(8);
        assert_eq!(
            (eight.servers.as_deref(), eight.load.as_deref()),
            (Some("0-6"), Some("7"))
        );
        assert_eq!(Cpus::split(1), Cpus::default());
        assert_eq!(two.server_count(9), 1);
        assert_eq!(eight.server_count(9), 7);
        assert_eq!(Cpus::default().server_count(9), 9);
    }

    #[test]
    fn rss_of_this_process_is_read_from_proc() {
        let rss = rss_kib(std::process::id()).unwrap();
        assert!(rss > 0, "a running process has resident pages");
    }

    #[test]
    fn parent_of_this_process_is_found() {
        let me = std::process::id();
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let found = children(me).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "the spawned sleep is listed as a child");
    }
}
