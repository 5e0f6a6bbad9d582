//! The Replicate API as CutX uses it: creating, reading and canceling predictions through the
//! guarded HTTP client, with Replicate's rate limits and retry rules built in; the prediction
//! as Replicate sends it (in answers and in webhooks' bodies); and, per job kind, which model
//! runs it and how a job's fields fill that model's input.

mod client;
mod error;
mod model_ref;
mod models;
pub mod outputs;
mod prediction;
mod retry;
mod webhook;

pub use client::{Replicate, ReplicateConfig};
pub use error::ReplicateError;
pub use model_ref::{InvalidModelRef, ModelRef};
pub use models::{ModelError, ModelSpec, Models};
pub use prediction::{Prediction, PredictionStatus};
pub use webhook::{WebhookEvent, WebhookTarget};
