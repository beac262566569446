//! Offline inputs, read and judged in one go: what `audit` reports and `serve` exports when it
//! runs on a cluster dump and trail files (or the bundled demo).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::evaluate::cloudtrail::{self, TrailEvidence, TrailView};
use crate::evaluate::{self, Evaluation};
use crate::model::{ClusterSnapshot, ParseError};
use crate::source::aws::RequestError;
use crate::source::s3_trail::{self, RangeQuery};
use crate::source::{kube_dir, trail_dir, trail_file};
use crate::state::trail::TrailTally;

/// Where a cluster dump or a trail archive comes from.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Dir(&'a Path),
    /// Named files held in memory (the bundled demo).
    Embedded(&'a [(&'static str, &'static [u8])]),
    /// A snapshot already taken (of a live cluster); only meaningful for the cluster side.
    Snapshot(&'a ClusterSnapshot),
    /// A time range of an organisation trail's bucket; only meaningful for the trail side.
    Bucket(&'a RangeQuery),
}

/// What the trail input gave.
pub struct TrailState {
    pub tally: TrailTally,
    pub evidence: TrailEvidence,
    pub files: usize,
    pub errors: Vec<ParseError>,
}

impl TrailState {
    /// The summary the outputs read; `window_seconds` is the per-resource window reported.
    pub fn view(&self, window_seconds: u64) -> TrailView<'_> {
        TrailView {
            tally: &self.tally,
            evidence: &self.evidence,
            files: self.files,
            errors: &self.errors,
            window_seconds,
        }
    }
}

pub struct Offline {
    pub snapshot: ClusterSnapshot,
    pub evaluation: Evaluation,
    pub trail: Option<TrailState>,
}

/// Per-resource window settings: its length (`None`: the whole input) and its end (`None`:
/// the newest event).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub length: Option<Duration>,
    pub at: Option<i64>,
}

/// An input that could not be read at all (problems inside one are in its error list).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("--kube-dir {}: {source}", dir.display())]
    KubeDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("--cloudtrail-dir {}: {source}", dir.display())]
    CloudtrailDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("--cloudtrail-s3 s3://{bucket}/{prefix}: {source}")]
    CloudtrailS3 {
        bucket: String,
        prefix: String,
        source: RequestError,
    },
    #[error("a cluster snapshot is no trail input")]
    NotATrail,
    #[error("a bucket is no cluster input")]
    NotACluster,
}

pub fn read_cluster(input: Input) -> Result<ClusterSnapshot, ReadError> {
    match input {
        Input::Dir(dir) => kube_dir::read_kube_dir(dir).map_err(|source| ReadError::KubeDir {
            dir: dir.to_path_buf(),
            source,
        }),
        Input::Embedded(files) => {
            let mut s = ClusterSnapshot::default();
            for (name, bytes) in files {
                kube_dir::read_bytes(&format!("demo:{name}"), bytes, &mut s);
            }
            s.normalize();
            Ok(s)
        }
        Input::Snapshot(s) => Ok(s.clone()),
        Input::Bucket(_) => Err(ReadError::NotACluster),
    }
}

/// Reads trail input into `tally`; returns the files read and the problems met.
pub fn read_trail(
    input: Input,
    tally: &mut TrailTally,
) -> Result<(usize, Vec<ParseError>), ReadError> {
    match input {
        Input::Dir(dir) => trail_dir::read_trail_dir(dir, &mut |r| {
            tally.ingest(r);
        })
        .map(|r| (r.files, r.errors))
        .map_err(|source| ReadError::CloudtrailDir {
            dir: dir.to_path_buf(),
            source,
        }),
        Input::Embedded(files) => {
            let mut errors = Vec::new();
            for (name, bytes) in files {
                let read = trail_file::read_named(&format!("demo:{name}"), bytes, &mut |r| {
                    tally.ingest(&r);
                });
                errors.extend(read.errors);
            }
            Ok((files.len(), errors))
        }
        Input::Snapshot(_) => Err(ReadError::NotATrail),
        Input::Bucket(query) => s3_trail::read_range(query, &mut |r| {
            tally.ingest(&r);
        })
        .map(|r| (r.objects, r.errors))
        .map_err(|source| ReadError::CloudtrailS3 {
            bucket: query.settings.bucket.clone(),
            prefix: query.settings.prefix.clone(),
            source,
        }),
    }
}

/// Reads everything, then evaluates. Errors name the input that could not be read at all;
/// problems inside the input are in the snapshot's and the trail state's error lists.
pub fn load(
    cluster: Input,
    trail: Option<Input>,
    config: &Config,
    window: Window,
) -> Result<Offline, ReadError> {
    let snapshot = read_cluster(cluster)?;
    let evaluation = evaluate::evaluate(&snapshot, config);
    let trail = match trail {
        None => None,
        Some(input) => {
            let mut tally = TrailTally::default();
            let (files, errors) = read_trail(input, &mut tally)?;
            let bounds = cloudtrail::window_bounds(tally.newest, window.at, window.length);
            let evidence = cloudtrail::evidence(
                &tally,
                &snapshot,
                &evaluation,
                &config.cloudtrail.identifiers,
                bounds,
            );
            Some(TrailState {
                tally,
                evidence,
                files,
                errors,
            })
        }
    };
    Ok(Offline {
        snapshot,
        evaluation,
        trail,
    })
}
