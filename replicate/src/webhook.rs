//! Where Replicate should send a prediction's updates, and which ones.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    /// Sent as `webhook_events_filter`; empty leaves Replicate's default (every event).
    pub events: Vec<WebhookEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    Start,
    Output,
    Logs,
    Completed,
}

impl WebhookEvent {
    /// The name Replicate gives the event, as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Output => "output",
            Self::Logs => "logs",
            Self::Completed => "completed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_serializes_as_its_name() {
        for event in [WebhookEvent::Start, WebhookEvent::Output, WebhookEvent::Logs, WebhookEvent::Completed] {
            assert_eq!(serde_json::to_value(event).unwrap(), serde_json::json!(event.as_str()));
            assert_eq!(serde_json::from_value::<WebhookEvent>(event.as_str().into()).unwrap(), event);
        }
    }
}
