//! The race harness: tools that force and explore the interleavings of
//! concurrent requests, so that a guarantee involving two requests, two
//! servers or a store failure is tested the way it can break.
//!
//! - [`GatedStore`] and [`Gate`]: hold one chosen store call (an operation,
//!   optionally for one id, before it reaches the store or after the store
//!   answered) until the test releases it, to force one exact interleaving.
//! - [`History`] and [`History::check`]: a Jepsen-style record of every
//!   client-visible request of a scenario (begin, end, what it saw, what
//!   its response did to the cookie), checked against session-kit's
//!   promises: no acknowledged write lost, no stale read, nothing ended
//!   coming back, no cookie replaced but by `cycle_id` or `destroy`, no
//!   value going backwards. [`Client`] runs requests through a
//!   `SessionManager` and records them.
//! - [`Explorer`]: runs a small [`Scenario`] (a few app servers, each its
//!   own manager and store over the same shared stores, a few clients, a
//!   few requests each, faults) under many seeds and checks every history.
//!
//! # The explorer's mechanism
//! Each seed runs on its own current-thread tokio runtime with a paused
//! clock. Every shared store is wrapped in a [`SimulatedStore`] that sleeps
//! a seeded number of (virtual) milliseconds before each call reaches the
//! store and again before the answer reaches its caller, and applies the
//! faults ([`StoreFault`]: down, paused, restarted empty). Clients pause a
//! seeded think time before each request and pick the server and the
//! request from the same seeded generator. On one thread, with time moving
//! only when every task waits, the order in which tasks wake is a function
//! of the timers alone, so the interleaving, the faults and the history
//! follow from the seed: `SESSION_KIT_RACE_SEED=<n>` replays one run
//! exactly (with in-process stores), and the failing seed is printed with
//! its history. Breakers, call timeouts and operation timeouts read
//! tokio's clock, so back-off and timeouts are virtual time too, and a
//! 300 ms timeout costs nothing.
//!
//! Why not `shuttle` or a scheduler of our own: the stores under test are
//! tokio code (timeouts, spawned replays, `tokio::sync`), which `shuttle`
//! cannot run without replacing tokio; and a scheduler of our own would
//! have to hook every await point. Delays at the store boundary reach the
//! interleavings that matter here, the order in which calls from different
//! servers reach and leave each store, at no cost to the code under test.
//!
//! What it does not make exact: hash-map iteration order inside the stores
//! (a failover store's replay backlog with several sessions), which a
//! process randomises. The scenarios keep to one or two sessions, and a
//! test checks that a seed replays the same history.
//!
//! Over real servers (Redis, Memcached), run
//! [`Explorer::run_in_current_runtime`] on a multi-thread runtime with
//! real time, and supply the faults through [`Deployment::faults`]: the
//! seed still fixes every delay, request and fault window, but not the
//! servers' own timing, so a failing seed is a lead, not an exact replay.
//!
//! # Running longer
//! Every explorer test runs a bounded number of seeds by default (part of
//! `scripts/test`). `SESSION_KIT_RACE_SEEDS=<count>` runs that many seeds
//! per test instead, for a longer hunt:
//! ```text
//! SESSION_KIT_RACE_SEEDS=5000 cargo test -p session-conformance --test race_explore
//! ```
//! and `SESSION_KIT_RACE_SEED=<n>` replays one seed and prints its history.
//! `session-conformance/tests/race_explore.rs` holds the in-process
//! scenarios, including those that found the races of issue 21 before they
//! were fixed; they run by default.
#![allow(clippy::module_name_repetitions)]

mod check;
mod client;
mod explore;
mod faults;
mod gate;
mod history;
mod scenario;

pub use check::{Promise, Violation};
pub use client::Client;
pub use explore::{Deployment, Explorer, Run, Summary, SEEDS_VAR, SEED_VAR};
pub use faults::{Faults, Schedule, SimulatedFaults, SimulatedStore, StoreFault};
pub use gate::{Catch, Gate, GatedStore, Op, Point};
pub use history::{Action, CookieChange, History, Observed, OpIndex, Operation, Outcome, Tick};
pub use scenario::{FaultWindow, Mix, Scenario, OWNER};
