//! How much CPU other programs took during a run. On a small shared machine a compile or a
//! test suite starting mid-run can halve a figure; a run that shared the CPU with strangers
//! is repeated rather than trusted.
//!
//! "Ours" is this process, its children (wrk, once reaped) and every descendant (the servers
//! and nginx's workers). "Theirs" is the rest of the user and system time in `/proc/stat`,
//! plus steal time. Soft-interrupt time is left out: loopback traffic is handled there and is
//! charged to no process, so it would count our own packets as someone else's work.

use std::collections::HashMap;

/// Counters at one instant, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// user + nice + system of the whole machine.
    busy: u64,
    steal: u64,
    /// utime + stime of this process tree.
    ours: u64,
}

/// The machine-wide counters from `/proc/stat`'s first line: (user+nice+system, steal).
fn machine(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some((at(0) + at(1) + at(2), at(7)))
}

/// (parent, utime + stime, cutime + cstime) from one `/proc/<pid>/stat`.
fn process(stat: &str) -> Option<(u32, u64, u64)> {
    // Fields after the command name, which sits in parentheses and may contain anything.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // `rest` starts at field 3 (state): parent is field 4, utime..cstime are fields 14..17.
    let parent = u32::try_from(num(1)?).ok()?;
    Some((parent, num(11)? + num(12)?, num(13)? + num(14)?))
}

/// CPU used by `root` and all its descendants, in ticks. `root` also counts the children it
/// has reaped (so finished wrk runs are included).
fn tree(root: u32) -> u64 {
    let mut parents: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    let mut root_total = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((parent, own, reaped)) = process(&stat) else {
                continue;
            };
            if pid == root {
                root_total = own + reaped;
            } else {
                parents.entry(parent).or_default().push((pid, own));
            }
        }
    }
    let mut total = root_total;
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for (child, own) in parents.get(&pid).into_iter().flatten() {
            total += own;
            queue.push(*child);
        }
    }
    total
}

/// Online CPUs of the machine (not of this process's affinity mask, which pinning narrows).
pub fn cores() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| {
            stat.lines()
                .filter(|l| {
                    l.strip_prefix("cpu")
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

/// Reads the counters now.
pub fn sample() -> Option<Sample> {
    let (busy, steal) = machine(&std::fs::read_to_string("/proc/stat").ok()?)?;
    Some(Sample {
        busy,
        steal,
        ours: tree(std::process::id()),
    })
}

/// The share of the machine (0–1) other programs used between `before` and `after`, which
/// were `ticks` clock ticks apart per core on `cores` cores.
pub fn foreign_share(before: &Sample, after: &Sample, ticks: f64, cores: usize) -> f64 {
    let busy = after.busy.saturating_sub(before.busy);
    let ours = after.ours.saturating_sub(before.ours);
    let steal = after.steal.saturating_sub(before.steal);
    let capacity = ticks * cores.max(1) as f64;
    if capacity <= 0.0 {
        return 0.0;
    }
    (busy.saturating_sub(ours) + steal) as f64 / capacity
}

/// Clock ticks per second for `/proc` counters (USER_HZ), which Linux fixes at 100.
pub const TICKS_PER_SECOND: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_counters_are_user_nice_system_and_steal() {
        let stat = "cpu  100 5 50 9000 7 3 11 20 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(machine(stat), Some((155, 20)));
    }

    #[test]
    fn process_counters_survive_spaces_and_parens_in_the_name() {
        let stat = "4242 (nginx: worker (x)) S 4200 4200 4200 0 -1 4194624 300 0 0 0 \
                    17 8 3 2 20 0 1 0 123 456 789";
        assert_eq!(process(stat), Some((4200, 25, 5)));
    }

    #[test]
    fn foreign_share_is_what_the_tree_did_not_use() {
        let before = Sample {
            busy: 1_000,
            steal: 0,
            ours: 400,
        };
        let after = Sample {
            busy: 1_800,
            steal: 100,
            ours: 1_000,
        };
        // 800 busy ticks, 600 ours: 200 theirs plus 100 stolen, over 500 ticks × 2 cores.
        assert!((foreign_share(&before, &after, 500.0, 2) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn the_machine_has_at_least_the_cores_this_process_may_use() {
        let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(cores() >= usable);
    }

    #[test]
    fn this_process_tree_has_used_some_cpu() {
        let mut spin = 0u64;
        for i in 0..20_000_000u64 {
            spin = spin.wrapping_add(i ^ (spin >> 3));
        }
        assert!(spin != 1);
        assert!(sample().unwrap().ours > 0);
    }
}
