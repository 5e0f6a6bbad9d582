//! Sending a prediction's webhooks the way Replicate does: the prediction object as the body,
//! Standard Webhooks headers, one `webhook-id` per event kept across its retries, retried on a
//! non-2xx answer or a connection error, redirects not followed. [`Webhooks`] bends this for a
//! test: duplicates, reversed order, delay, or nothing at all.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;

use super::state::{Prediction, Shared, random_id};
use super::{Answer, Delivery, Event, Status, Webhooks};

/// One event's webhook, ready to send (and to send again).
#[derive(Clone)]
pub(super) struct Pending {
    prediction_id: String,
    url: String,
    webhook_id: String,
    event: Event,
    status: Status,
    body: Bytes,
}

/// Decides what becomes of `event`, which has just happened to `prediction`: sent now, later,
/// several times, held back, or not at all. Called under the book's lock.
pub(super) fn dispatch(shared: &Arc<Shared>, prediction: &mut Prediction, event: Event) {
    let Some(url) = prediction.webhook.clone() else { return };
    let pending = Pending {
        prediction_id: prediction.id.clone(),
        url,
        webhook_id: format!("msg_{}", random_id(27)),
        event,
        status: prediction.status,
        body: Bytes::from(serde_json::to_vec(&prediction.to_json(&shared.origin)).expect("a prediction as JSON")),
    };
    let wanted = prediction.events_filter.contains(&event);
    let mode = shared.behaviour.lock().unwrap().webhooks;
    // Held events go out once the prediction is terminal, even if the mode changed meanwhile.
    if event == Event::Completed && (mode == Webhooks::Reorder || !prediction.held.is_empty()) {
        let held = std::mem::take(&mut prediction.held);
        let in_order: Vec<Pending> = wanted.then_some(pending).into_iter().chain(held.into_iter().rev()).collect();
        let sender = Arc::clone(shared);
        shared.spawn(async move {
            for pending in &in_order {
                deliver(&sender, pending).await;
            }
        });
        return;
    }
    if !wanted {
        return;
    }
    match mode {
        Webhooks::Normal => send(shared, pending),
        Webhooks::Duplicate(times) => (0..times).for_each(|_| send(shared, pending.clone())),
        Webhooks::Reorder => prediction.held.push(pending),
        Webhooks::Delay(delay) => {
            let sender = Arc::clone(shared);
            shared.spawn(async move {
                tokio::time::sleep(delay).await;
                deliver(&sender, &pending).await;
            });
        }
        Webhooks::Drop => {}
    }
}

fn send(shared: &Arc<Shared>, pending: Pending) {
    let sender = Arc::clone(shared);
    shared.spawn(async move { deliver(&sender, &pending).await });
}

/// Sends one event's webhook until it is answered 2xx or its retries run out.
async fn deliver(shared: &Shared, pending: &Pending) {
    let behaviour = shared.behaviour();
    for attempt in 1..=behaviour.webhook_retries + 1 {
        let timestamp = Utc::now().timestamp();
        let signature =
            shared.signer.sign(&pending.webhook_id, timestamp, &pending.body).expect("a UTF-8 webhook body");
        let sent = shared
            .http
            .post(&pending.url)
            .header("content-type", "application/json")
            .header("webhook-id", &pending.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .timeout(behaviour.webhook_timeout)
            .body(pending.body.clone())
            .send()
            .await;
        let answer = match sent {
            Ok(response) => Answer::Status(response.status().as_u16()),
            Err(e) => Answer::Unreachable(e.to_string()),
        };
        let delivered = matches!(answer, Answer::Status(200..=299));
        shared.book.lock().unwrap().deliveries.push(Delivery {
            prediction_id: pending.prediction_id.clone(),
            webhook_id: pending.webhook_id.clone(),
            event: pending.event,
            status: pending.status,
            answer,
            attempt,
        });
        if delivered {
            return;
        }
        if attempt <= behaviour.webhook_retries {
            tokio::time::sleep(behaviour.webhook_backoff).await;
        }
    }
}
