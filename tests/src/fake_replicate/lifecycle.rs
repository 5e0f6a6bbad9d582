//! A prediction's life, one state per step: `processing` with `step 1/3` .. `step 3/3` in its
//! logs (the output appears with the third when it will succeed), then `succeeded` or `failed`,
//! or `processing` for as long as the outcome is `NeverFinish`. A cancel ends it at any point:
//! every change goes through [`Shared::change`], which leaves a terminal prediction alone.

use std::sync::Arc;

use chrono::Utc;

use super::state::Shared;
use super::{Event, Outcome, Status, files};

const STEPS: usize = 3;

pub(super) async fn run(shared: Arc<Shared>, id: String, model: String) {
    for n in 1..=STEPS {
        tokio::time::sleep(shared.behaviour().step).await;
        let behaviour = shared.behaviour();
        let output = (n == STEPS && behaviour.outcome == Outcome::Succeed)
            .then(|| files::output(&shared, &id, &model, behaviour.output_shape, behaviour.output_urls.clone()));
        let processed = shared.change(&id, |p| {
            p.steps += 1;
            p.status = Status::Processing;
            p.started_at.get_or_insert_with(Utc::now);
            p.logs.push_str(&format!("step {n}/{STEPS}\n"));
            match output {
                Some(output) => {
                    p.output = output;
                    Some(Event::Output)
                }
                None => Some(Event::Logs),
            }
        });
        if processed.is_err() {
            return;
        }
    }
    loop {
        tokio::time::sleep(shared.behaviour().step).await;
        let behaviour = shared.behaviour();
        let outcome = behaviour.outcome.clone();
        // A prediction released from `NeverFinish` has no output yet.
        let has_output = shared.book.lock().unwrap().find(&id).is_some_and(|p| !p.output.is_null());
        let output = (outcome == Outcome::Succeed && !has_output)
            .then(|| files::output(&shared, &id, &model, behaviour.output_shape, behaviour.output_urls.clone()));
        let ended = shared.change(&id, |p| {
            p.steps += 1;
            let status = match outcome.clone() {
                Outcome::NeverFinish => return None,
                Outcome::Succeed => Status::Succeeded,
                Outcome::Fail(error) => {
                    p.error = Some(error);
                    Status::Failed
                }
            };
            if let Some(output) = output {
                p.output = output;
            }
            p.status = status;
            p.completed_at = Some(Utc::now());
            Some(Event::Completed)
        });
        if ended.is_err() || outcome != Outcome::NeverFinish {
            return;
        }
    }
}
