//! A Node.js program of `tests/apps` (the Express app, the identity provider) run with `node`
//! on ports picked for it. Its standard output and error go to one log file, and it counts as
//! started once that log says it listens. Killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long one start may take: node now and then stalls at start on a loaded machine.
const START_PATIENCE: Duration = Duration::from_secs(20);
/// How many starts are tried, each on new ports: a port that was free when picked may be
/// bound by another test first, and node then exits with `EADDRINUSE`.
const START_TRIES: usize = 3;

/// A running `node` program; killed when dropped.
pub struct NodeProgram {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl NodeProgram {
    /// Runs `node {script} {port}…` on `N` free ports, new ones for each try, until its log
    /// holds `ready(ports)`. A try that exits or stays silent for [`START_PATIENCE`] is killed
    /// and made again, up to [`START_TRIES`] times; `what` names the program in the panic that
    /// follows, with the last try's log.
    pub fn start<const N: usize>(
        script: &Path,
        what: &str,
        ready: impl Fn(&[u16; N]) -> String,
    ) -> (NodeProgram, [u16; N]) {
        let mut last_log = String::new();
        for _ in 0..START_TRIES {
            let ports: [u16; N] = std::array::from_fn(|_| free_port());
            match NodeProgram::try_start(script, &ports, &ready(&ports)) {
                Ok(program) => return (program, ports),
                Err(log) => last_log = log,
            }
        }
        panic!("{what} did not start in {START_TRIES} tries; its last log:\n{last_log}")
    }

    /// One start; the log of a start that did not come up.
    fn try_start(script: &Path, ports: &[u16], ready: &str) -> Result<NodeProgram, String> {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let out = log.reopen().expect("the log file");
        let child = Command::new("node")
            .arg(script)
            .args(ports.iter().map(u16::to_string))
            .stdin(Stdio::null())
            // One open file for both, so that they share its offset and neither overwrites
            // what the other wrote (two opens of the file would each write from its start).
            .stdout(out.try_clone().expect("the log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "node cannot run {} ({e}); `scripts/setup.sh test` installs it",
                    script.display()
                )
            });
        let mut program = NodeProgram { child, log };
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            let log = program.log();
            if log.contains(ready) {
                return Ok(program);
            }
            let exited = matches!(program.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                // Dropping it kills it.
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the program has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for NodeProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
