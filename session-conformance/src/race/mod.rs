//! The race harness: tools that force and explore the interleavings of
//! concurrent requests, so that a guarantee involving two requests, two
//! servers or a store failure is tested the way it can break.
//!
//! - [`GatedStore`] and [`Gate`]: hold one chosen store call (an operation,
//!   optionally for one id, before it reaches the store or after the store
//!   answered) until the test releases it, to force one exact interleaving.
#![allow(clippy::module_name_repetitions)]

mod gate;

pub use gate::{Catch, Gate, GatedStore, Op, Point};
