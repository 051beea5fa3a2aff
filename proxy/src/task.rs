//! The shape of background work: a future that runs for the life of the process.
//!
//! It is a leaf so that every module producing such work (the audit writer, the lock store's
//! reaper, the demo app) can name it without importing the server that runs it.

use std::future::Future;
use std::pin::Pin;

/// A task that runs for the life of the process on the background runtime.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
