//! Shared plumbing for every CutX service: ids, secrets, mesh tokens and sessions, errors,
//! the database, the job queue and the media store.

pub mod aspect;
pub mod error;
pub mod ids;
pub mod mesh;
pub mod secret;
pub mod session;
pub mod clock;
pub mod db;
pub mod queue;
pub mod media;
pub mod grpc;
pub mod telemetry;
