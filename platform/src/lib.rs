//! Shared plumbing for every CutX service: ids, secrets, mesh tokens and sessions, errors,
//! the database, the job queue and the media store.

pub mod aspect;
pub mod clock;
pub mod credits;
pub mod db;
pub mod error;
pub mod fetch;
pub mod grpc;
pub mod ids;
pub mod media;
pub mod mesh;
pub mod paging;
pub mod queue;
pub mod request_id;
pub mod secret;
pub mod session;
pub mod telemetry;
