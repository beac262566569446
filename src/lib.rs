//! ack-drift-exporter: finds AWS Controllers for Kubernetes (ACK) resources living in the
//! wrong AWS account or region.
//!
//! Layout: [`source`] reads inputs into the [`model`] vocabulary, [`state`] holds what live
//! sources read, [`evaluate`] judges a snapshot with pure functions, [`output`] renders the
//! verdicts, and [`serve`] runs the exporter process.

pub mod config;
pub mod demo;
pub mod evaluate;
pub mod exposition;
pub mod intern;
pub mod model;
pub mod offline;
pub mod output;
pub mod serve;
pub mod source;
pub mod state;
pub mod telemetry;
