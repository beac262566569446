//! State: what the live sources have read so far, held between publishes — the cluster as
//! the watches see it, and the de-duplicated CloudTrail tally. Sources write it; the
//! evaluation reads snapshots of it.

pub mod cluster;
pub mod trail;
