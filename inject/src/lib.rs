//! Puts the Latch banner script into HTML pages on their way to the browser.
//!
//! This crate owns four things: the streaming rewriter that inserts one `<script>` tag before
//! `</head>` or before `</body>` ([`Injector`], [`Placement`]), the memo of where that tag went
//! in heads already parsed ([`HeadMemo`]), the builder of that tag ([`script_tag`]), and the
//! reading of the page's Content-Security-Policy that decides whether the tag may be inserted
//! at all and with which nonce ([`csp_verdict`]).
//!
//! It is pure and synchronous: it knows nothing of pingora, HTTP framing, compression, locks or
//! the banner protocol. The caller hands it decoded body bytes and header values, and decides
//! what to do when injection is refused.

mod csp;
mod injector;
mod memo;
mod tag;

pub use csp::{csp_verdict, CspVerdict};
pub use injector::{InjectError, Injector, Placement};
pub use memo::HeadMemo;
pub use tag::script_tag;
