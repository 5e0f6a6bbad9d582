//! The `cutx` binary's library: how the services are put together. `cutx dev` runs them all in
//! one process ([`dev::DevMesh`]); the end-to-end tests start the same mesh.

pub mod config;
pub mod dev;
pub mod distributed;
pub mod payments;
pub mod remote;
mod secrets;
