//! Sources only produce data: they read clusters and trails into the model, nothing more.

pub mod aws;
pub mod kube;
pub mod kube_dir;
pub mod lookup_events;
pub mod queue_message;
pub mod s3_trail;
pub mod sqs_trail;
pub mod trail_dir;
pub mod trail_file;
