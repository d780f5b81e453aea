//! # mailhook
//!
//! An email-webhook gateway for Cloudflare Workers. Providers post their
//! webhooks here; mailhook authenticates each request, turns the payload into
//! one canonical CloudEvents event, drops duplicates with keys in Workers KV,
//! and puts the event on a Queue, whose consumer delivers it to the origin,
//! signed by the Standard Webhooks scheme, with retries and a dead-letter queue.
//!
//! # Layout
//!
//! The pure core compiles and is tested natively; it reads no clock and does
//! no I/O (time and randomness are arguments):
//!
//! - [`config`]: every variable read once into a validated `Config`, secrets redacted.
//! - [`providers`]: one module per source, each implementing `Source` (everything
//!   about itself), the `registry!` that lists them, and `Provider::ingest`, the
//!   pure half of the pipeline.
//! - [`large`]: large email without copies: skeletons, markers, events as parts of the body.
//! - [`event`]: the canonical event. [`address`], [`time`], [`mailauth`]: shared parsers.
//! - [`auth`]: constant-time comparison, tokens, HMAC, IP allow-lists, the age window.
//! - [`dns`]: reverse DNS over DoH for Mail-Plus: queries, answers, verdict (no I/O).
//! - [`dedupe`]: stable event ids and KV keys.
//! - [`delivery`]: the queue envelope, signing, outcome, retry schedule.
//! - [`destinations`]: where events go: declarations, filters, the circuit breaker's gate.
//! - [`alerts`]: what tells a person that an event died or a destination is down (batched messages).
//! - [`console`]: the operator console's routes, session, headers and overview numbers.
//! - [`admin`]: the operator API: routes, bearer check, event-log queries (no I/O).
//! - [`error`]: the refusals and their one mapping to HTTP. [`routes`]: method + path → handler.
//!
//! `edge` (wasm32 only) moves bytes between the Workers runtime and the core:
//! the fetch handler runs ingest → dedupe → enqueue → answer (the email
//! handler does the same for mail Email Routing hands over); the queue
//! handler delivers and dead-letters; the crons send alerts and apply retention.

pub mod address;
pub mod admin;
pub mod alerts;
pub mod auth;
pub mod config;
pub mod console;
pub mod dedupe;
pub mod delivery;
pub mod destinations;
pub mod dns;
pub mod error;
pub mod event;
pub mod large;
pub mod mailauth;
pub mod pipeline;
pub mod providers;
pub mod routes;
#[doc(hidden)]
pub mod testkit;
pub mod time;

#[cfg(all(target_arch = "wasm32", feature = "edge"))]
mod edge;

/// The ingest module's exports (built for wasm32 without `edge`; natively for its tests).
#[cfg(any(not(target_arch = "wasm32"), not(feature = "edge")))]
mod abi;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
