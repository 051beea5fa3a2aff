//! The benchmark harness (not built yet).
//!
//! It will own the bare pingora baseline proxy, the static upstream, and the runner that drives
//! wrk against each system in alternating rounds and reports ratios against the baseline.
