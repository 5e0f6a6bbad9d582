//! Dead letters on NATS: written by the worker on a last failure or by the max-deliveries safety
//! net, read back for operators and tests. A letter is the message's payload with headers
//! `Cutx-Error`, `Cutx-Deliveries`, `Cutx-Topic` (the original subject) and `Nats-Msg-Id`.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures::StreamExt;

use super::{MSG_ID, NatsQueueConfig, kind, storage};
use crate::queue::{DeadLetter, MAX_DELIVERIES, QueueError};

const ERROR: &str = "Cutx-Error";
const DELIVERIES: &str = "Cutx-Deliveries";
const TOPIC: &str = "Cutx-Topic";

/// A header value can hold no line breaks.
fn header_value(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

pub(super) struct Letter<'a> {
    pub id: &'a str,
    pub topic: &'a str,
    pub payload: Bytes,
    pub deliveries: u32,
    pub error: &'a str,
}

/// Stores a dead letter and waits for the server to confirm it.
pub(super) async fn publish(js: &Context, config: &NatsQueueConfig, letter: Letter<'_>) -> Result<(), QueueError> {
    let subject = format!("{}.{}", config.dlq_subjects, kind(config, letter.topic)?);
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, letter.id);
    headers.insert(TOPIC, letter.topic);
    headers.insert(DELIVERIES, letter.deliveries.to_string().as_str());
    headers.insert(ERROR, header_value(letter.error).as_str());
    js.publish_with_headers(subject, headers, letter.payload)
        .await
        .map_err(storage)?
        .await
        .map_err(|e| QueueError::during("storing a dead letter", e))?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// The safety net: a message whose every delivery was lost is copied to the dead letters.
pub(super) async fn capture_lost_messages(
    mut advisories: async_nats::Subscriber,
    js: Context,
    config: NatsQueueConfig,
) {
    while let Some(advisory) = advisories.next().await {
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&advisory.payload) else {
            tracing::warn!("unreadable max-deliveries advisory");
            continue;
        };
        if let Err(e) = dead_letter_lost(&js, &config, &advisory).await {
            tracing::error!(sequence = advisory.stream_seq, error = %e, "dead-lettering a message no worker settled");
        }
    }
}

async fn dead_letter_lost(js: &Context, config: &NatsQueueConfig, advisory: &MaxDeliveries) -> Result<(), QueueError> {
    let stream = js.get_stream_no_info(&config.stream).await.map_err(storage)?;
    let message = match stream.get_raw_message(advisory.stream_seq).await {
        Ok(message) => message,
        // Another process already moved it.
        Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(()),
        Err(e) => return Err(storage(e)),
    };
    let id = message.headers.get(MSG_ID).map_or_else(|| message.sequence.to_string(), |v| v.as_str().to_string());
    let error = format!("delivered {} times, never settled: its workers stopped", advisory.deliveries);
    tracing::error!(id = %id, "{error}; dead-lettering it");
    let letter = Letter {
        id: &id,
        topic: &message.subject,
        payload: message.payload.clone(),
        deliveries: MAX_DELIVERIES,
        error: &error,
    };
    publish(js, config, letter).await?;
    stream.delete_message(advisory.stream_seq).await.map_err(storage)?;
    Ok(())
}

/// Every dead letter, oldest first, read by an ephemeral ordered consumer.
pub(super) async fn read_all(js: &Context, config: &NatsQueueConfig) -> Result<Vec<DeadLetter>, QueueError> {
    let mut stream = js.get_stream(&config.dlq_stream).await.map_err(storage)?;
    let count = stream.info().await.map_err(storage)?.state.messages;
    let mut letters = Vec::new();
    if count == 0 {
        return Ok(letters);
    }
    let reader = stream
        .create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .map_err(storage)?;
    let mut messages = reader.messages().await.map_err(storage)?;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .map_err(|_| storage("reading dead letters timed out"))?
    {
        let message = message.map_err(storage)?;
        let pending = message.info().map_err(storage)?.pending;
        let header = |name: &str| {
            message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string()).unwrap_or_default()
        };
        let deliveries = header(DELIVERIES);
        let deliveries = deliveries
            .parse()
            .map_err(|_| QueueError::Broken(format!("a dead letter's {DELIVERIES} header is {deliveries:?}")))?;
        letters.push(DeadLetter {
            id: header(MSG_ID),
            topic: header(TOPIC),
            payload: message.payload.clone(),
            deliveries,
            error: header(ERROR),
        });
        if pending == 0 {
            break;
        }
    }
    Ok(letters)
}
