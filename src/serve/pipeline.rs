//! Which sources `serve` reads and how it publishes them: the flag combinations as one type
//! ([`Pipeline`]), decided once and matched once.

use std::path::PathBuf;
use std::sync::Arc;

use kube::Client;
use tokio::task::JoinHandle;

use super::ServeError;
use super::web::AppState;
use crate::config::Config;
use crate::source::kube::{self as kube_source, KubeOptions};
use crate::telemetry::Telemetry;

/// Where `serve` reads from, as the command line says it.
pub enum Sources {
    /// The bundled demo, compiled into the binary.
    Demo,
    Offline {
        kube_dir: PathBuf,
        cloudtrail_dir: Option<PathBuf>,
    },
    /// A live cluster (kubeconfig or in-cluster), with trail files for the CloudTrail side.
    Live {
        kube: KubeOptions,
        cloudtrail_dir: Option<PathBuf>,
    },
}

/// What `serve` runs.
pub(super) enum Pipeline {
    /// Read once and published once: nothing it reads changes.
    Once(OnceInput),
    /// Published on every change: a live cluster, or live CloudTrail beside a dump.
    Continuous {
        cluster: ClusterInput,
        trail: TrailInput,
    },
}

/// The input of a pipeline that publishes once.
pub(super) enum OnceInput {
    Demo,
    Dump {
        kube_dir: PathBuf,
        cloudtrail_dir: Option<PathBuf>,
    },
}

/// The cluster side of a continuous pipeline.
pub(super) enum ClusterInput {
    /// Kubernetes watches through a client already configured.
    Watch {
        client: Client,
        options: KubeOptions,
    },
    /// A dump, read once.
    Dump(PathBuf),
}

/// The CloudTrail side of a continuous pipeline.
pub(super) enum TrailInput {
    Off,
    /// Trail files, read once.
    Files(PathBuf),
    /// LookupEvents polling (`cloudtrail.accounts`), after the trail files, if any.
    Live {
        files: Option<PathBuf>,
    },
    /// The organisation trail's queue (`cloudtrail.sqs`), after the trail files and the
    /// bucket's backfill.
    Queue {
        files: Option<PathBuf>,
    },
}

impl Pipeline {
    /// Checks what the flags name (folders readable, a Kubernetes configuration found) before
    /// anything listens.
    pub(super) async fn prepare(sources: Sources, config: &Config) -> Result<Self, ServeError> {
        let c = &config.cloudtrail;
        if c.s3.is_some() && c.sqs.is_none() {
            return Err(ServeError::Usage(
                "cloudtrail.s3 is read back at start for cloudtrail.sqs: set cloudtrail.sqs too (or drop cloudtrail.s3; audit reads a bucket with --cloudtrail-s3)".to_string(),
            ));
        }
        let live_cloudtrail = c.accounts.is_some() || c.sqs.is_some();
        let queue = c.sqs.is_some();
        let trail = |files: Option<PathBuf>| match (live_cloudtrail, files) {
            (true, files) if queue => TrailInput::Queue { files },
            (true, files) => TrailInput::Live { files },
            (false, Some(dir)) => TrailInput::Files(dir),
            (false, None) => TrailInput::Off,
        };
        Ok(match sources {
            Sources::Demo => Pipeline::Once(OnceInput::Demo),
            Sources::Offline {
                kube_dir,
                cloudtrail_dir,
            } => {
                readable("--kube-dir", &kube_dir)?;
                if let Some(dir) = &cloudtrail_dir {
                    readable("--cloudtrail-dir", dir)?;
                }
                if live_cloudtrail {
                    Pipeline::Continuous {
                        cluster: ClusterInput::Dump(kube_dir),
                        trail: trail(cloudtrail_dir),
                    }
                } else {
                    Pipeline::Once(OnceInput::Dump {
                        kube_dir,
                        cloudtrail_dir,
                    })
                }
            }
            Sources::Live {
                kube,
                cloudtrail_dir,
            } => Pipeline::Continuous {
                cluster: ClusterInput::Watch {
                    client: kube_source::client(&kube)
                        .await
                        .map_err(|e| ServeError::Usage(e.to_string()))?,
                    options: kube,
                },
                trail: trail(cloudtrail_dir),
            },
        })
    }

    /// Turns on the health families only a live source serves.
    pub(super) fn enable_telemetry(&self, telemetry: &mut Telemetry) {
        if let Pipeline::Continuous { cluster, trail } = self {
            if matches!(cluster, ClusterInput::Watch { .. }) {
                telemetry.enable_live_kube();
            }
            match trail {
                TrailInput::Live { .. } => telemetry.enable_live_cloudtrail(),
                TrailInput::Queue { .. } => telemetry.enable_org_trail(),
                TrailInput::Off | TrailInput::Files(_) => {}
            }
        }
    }

    /// Starts reading and publishing in the background.
    pub(super) fn start(
        self,
        state: Arc<AppState>,
        config: Config,
        at: Option<i64>,
    ) -> JoinHandle<()> {
        match self {
            Pipeline::Once(input) => tokio::task::spawn_blocking(move || {
                super::once::publish_once(&state, &input, &config, at);
            }),
            Pipeline::Continuous { cluster, trail } => {
                tokio::spawn(super::continuous::run(state, cluster, trail, config, at))
            }
        }
    }
}

fn readable(flag: &str, dir: &std::path::Path) -> Result<(), ServeError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(ServeError::Usage(format!(
            "{flag} {}: not a readable folder",
            dir.display()
        )))
    }
}
