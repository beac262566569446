//! Outputs only render what evaluation decided: into strings and bytes, never to a file,
//! socket or TLS stream (that is [`crate::serve`]).

pub mod audit;
pub mod controllers;
pub mod metrics;
pub mod page;
pub mod upgrade;
