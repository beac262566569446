//! Sources only produce data: they read clusters and trails into the model, nothing more.

pub mod kube;
pub mod kube_dir;
pub mod lookup_events;
pub mod trail_dir;
