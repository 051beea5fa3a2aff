//! The control plane (SPEC §6), not built yet.
//!
//! It will own the admin REST API (`/api/v1/rules`, `/api/v1/locks`, `/api/v1/events`), the
//! embedded admin web UI, the MongoDB and file rule stores, and the audit trail. It must not
//! know about pingora: it talks to lock state only through `store::LockStore`.
