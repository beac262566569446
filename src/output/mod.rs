//! Outputs only render what evaluation decided.

pub mod audit;
pub mod controllers;
pub mod metrics;
pub mod page;
pub mod upgrade;
pub mod web;
pub mod web_config;
