//! ack-drift-exporter: finds AWS Controllers for Kubernetes (ACK) resources living in the
//! wrong AWS account or region.
//!
//! Layout: [`source`] reads inputs into the [`model`] snapshot, [`evaluate`] judges it with
//! pure functions, and [`output`] renders the verdicts.

pub mod config;
pub mod demo;
pub mod evaluate;
pub mod exporter;
pub mod intern;
pub mod model;
pub mod offline;
pub mod output;
pub mod source;
pub mod telemetry;
