//! Outputs only render what evaluation decided.

pub mod audit;
pub mod controllers;
