//! Support for the store's integration tests, shared by `memory.rs` and `redis.rs`: the
//! `LockStore` contract every store keeps ([`contract`]). Throwaway `redis-server` processes
//! come from the `testkit` crate.

pub mod contract;
