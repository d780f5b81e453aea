//! # mailhook
//!
//! An email-webhook gateway for Cloudflare Workers. Providers post their
//! webhooks here and Email Routing hands over raw mail; mailhook authenticates
//! each input, turns it into canonical CloudEvents events, drops duplicates
//! with keys in Workers KV, and puts the events on a Queue, whose consumer
//! delivers each to every destination that takes it, signed by the Standard
//! Webhooks scheme, with retries, a circuit breaker and a dead-letter queue.
//!
//! # Layout
//!
//! The pure core compiles and is tested natively; it reads no clock and does
//! no I/O (time and randomness are arguments). By what happens to an event:
//!
//! - Ingest: [`pipeline`] decides everything about one input as data: the
//!   head before the body, reverse DNS as steps, the pure ingest, the plan of
//!   every I/O step. [`providers`] has one module per source (a seventh source
//!   goes there: a module implementing `Source` and one `registry!` line).
//!   [`event`] is the canonical event and [`conversation`] where received mail
//!   belongs (its thread and mailbox tag), [`reply`] what its sender wrote; [`large`] keeps large email without
//!   copies; [`dedupe`] makes ids and keys; [`dns`], [`mailauth`], [`address`]
//!   and [`time`] are the parsers the sources share.
//! - Delivery: [`delivery`] has the queue envelope, signing and the retry
//!   schedule; [`destinations`] says where events go (a new kind of destination
//!   goes there), with the circuit breaker's gate; [`alerts`] tells a person
//!   when an event dies or a destination goes down.
//! - Operators: [`admin`] (routes, bearer check, event-log queries; a new admin
//!   resource adds a route here and a file in `edge/admin/`), [`console`] and
//!   [`routes`] (method and path to handler); [`status`] spells every status once.
//! - Settings: [`config`] reads every variable once into a validated `Config`;
//!   [`values`] and [`limits`] are the leaves everything else uses (the error
//!   naming a variable, the parsers, the platform's limits); [`auth`] has the
//!   secrets, comparisons, HMAC and allow-lists; [`error`] the refusals and
//!   their one mapping to HTTP.
//!
//! `edge` (wasm32 only) is the one executor of all of it, in workers-rs:
//! `edge/ingest` carries out the pipeline's steps for webhooks and for mail,
//! `edge/deliver` is the queue consumers, `edge/admin` the operator API, and
//! the crons send alerts and apply retention.

pub mod address;
pub mod admin;
pub mod alerts;
pub mod auth;
pub mod config;
pub mod console;
pub mod conversation;
pub mod dedupe;
pub mod delivery;
pub mod destinations;
pub mod dns;
pub mod error;
pub mod event;
pub mod large;
pub mod limits;
pub mod links;
pub mod mailauth;
pub mod percent;
pub mod pipeline;
pub mod providers;
pub mod ratelimit;
pub mod reply;
pub mod routes;
pub mod status;
#[doc(hidden)]
pub mod testkit;
pub mod time;
pub mod values;

#[cfg(target_arch = "wasm32")]
mod edge;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
