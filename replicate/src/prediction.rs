//! A prediction as Replicate sends it, in answers and in webhooks' bodies. Fields Replicate adds
//! later are ignored; a status it adds later is an error, so it cannot pass for one we know.

use serde::{Deserialize, Serialize};

/// Longest progress line kept for a job's history.
const PROGRESS_CHARS: usize = 200;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Prediction {
    pub id: String,
    pub model: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub input: serde_json::Value,
    pub logs: Option<String>,
    /// The model's own shape: a URL, a list of URLs, or an object; see [`Prediction::output_urls`].
    pub output: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
    pub status: PredictionStatus,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub metrics: Option<serde_json::Value>,
    pub urls: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    Aborted,
}

impl PredictionStatus {
    /// The status as Replicate spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Aborted => "aborted",
        }
    }

    /// Replicate will not change a prediction in this state again.
    pub fn is_terminal(&self) -> bool {
        match self {
            Self::Starting | Self::Processing => false,
            Self::Succeeded | Self::Failed | Self::Canceled | Self::Aborted => true,
        }
    }
}

impl Prediction {
    /// Every output URL, whatever the model's shape: a URL string, a list of them, or an object
    /// (its values in the map's order: by key, as the workspace's serde_json keeps no insertion
    /// order), nested lists and objects walked depth-first. Strings that are not http(s) URLs
    /// (a caption, a seed) are skipped.
    pub fn output_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        if let Some(output) = &self.output {
            collect_urls(output, &mut urls);
        }
        urls
    }

    /// The error as text (a string as it is, anything else as its JSON), if any.
    pub fn error_text(&self) -> Option<String> {
        match self.error.as_ref()? {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }

    /// The last line of the logs, for progress in a job's history, at most 200 characters.
    /// Progress bars redraw with `\r`, so a line ends at either `\r` or `\n`.
    pub fn progress(&self) -> Option<String> {
        let line = self.logs.as_deref()?.split(['\n', '\r']).map(str::trim).rfind(|line| !line.is_empty())?;
        Some(line.chars().take(PROGRESS_CHARS).collect())
    }
}

fn collect_urls(value: &serde_json::Value, urls: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) if is_http_url(text) => urls.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_urls(item, urls)),
        serde_json::Value::Object(fields) => fields.values().for_each(|item| collect_urls(item, urls)),
        _ => {}
    }
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prediction(fields: serde_json::Value) -> Prediction {
        let mut body = json!({"id": "p1", "status": "starting", "input": {}});
        body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn output_urls_are_found_whatever_the_models_shape() {
        let cases = [
            (json!(null), vec![]),
            (json!("https://r.test/a.png"), vec!["https://r.test/a.png"]),
            (
                json!(["https://r.test/a.png", "https://r.test/b.png"]),
                vec!["https://r.test/a.png", "https://r.test/b.png"],
            ),
            (
                json!({"audio": "https://r.test/a.mp3", "video": "https://r.test/v.mp4"}),
                vec!["https://r.test/a.mp3", "https://r.test/v.mp4"],
            ),
            (
                json!({"a": ["https://r.test/1.png", {"b": "https://r.test/2.png"}], "c": [["https://r.test/3.png"]]}),
                vec!["https://r.test/1.png", "https://r.test/2.png", "https://r.test/3.png"],
            ),
            (
                json!([
                    "a caption",
                    "https://r.test/a.png",
                    42,
                    true,
                    "ftp://r.test/x",
                    "data:image/png;base64,AA",
                    "/relative.png"
                ]),
                vec!["https://r.test/a.png"],
            ),
            (json!("not a url"), vec![]),
            (json!({"seed": 7, "text": "hello"}), vec![]),
        ];
        for (output, expected) in cases {
            let found = prediction(json!({"output": output})).output_urls();
            assert_eq!(found, expected, "{output}");
        }
    }

    #[test]
    fn every_status_parses_from_its_lowercase_name() {
        let cases = [
            ("starting", PredictionStatus::Starting, false),
            ("processing", PredictionStatus::Processing, false),
            ("succeeded", PredictionStatus::Succeeded, true),
            ("failed", PredictionStatus::Failed, true),
            ("canceled", PredictionStatus::Canceled, true),
            ("aborted", PredictionStatus::Aborted, true),
        ];
        for (name, status, terminal) in cases {
            assert_eq!(serde_json::from_value::<PredictionStatus>(json!(name)).unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
            assert_eq!(status.is_terminal(), terminal, "{name}");
        }
    }

    #[test]
    fn an_unknown_status_is_an_error() {
        for name in ["queued", "Succeeded", ""] {
            assert!(serde_json::from_value::<PredictionStatus>(json!(name)).is_err(), "{name}");
        }
    }

    #[test]
    fn a_full_prediction_parses_and_unknown_fields_are_ignored() {
        let parsed: Prediction = serde_json::from_value(json!({
            "id": "gm3qorzdhgbfurvjtvhg6dckhu",
            "model": "black-forest-labs/flux-1.1-pro",
            "version": "dp-4d0bcc010b3049749a251855f12800be",
            "input": {"prompt": "a red shoe"},
            "logs": "",
            "output": "https://replicate.delivery/xezq/out.png",
            "data_removed": false,
            "error": null,
            "status": "succeeded",
            "created_at": "2025-01-01T00:00:00.000Z",
            "started_at": "2025-01-01T00:00:01.000Z",
            "completed_at": "2025-01-01T00:00:05.000Z",
            "metrics": {"predict_time": 3.9},
            "urls": {"get": "https://api.replicate.com/v1/predictions/gm3q", "cancel": "https://api.replicate.com/v1/predictions/gm3q/cancel"}
        }))
        .unwrap();
        assert_eq!(parsed.status, PredictionStatus::Succeeded);
        assert_eq!(parsed.output_urls(), vec!["https://replicate.delivery/xezq/out.png"]);
        assert_eq!(parsed.error_text(), None);
        assert_eq!(parsed.progress(), None);
    }

    #[test]
    fn a_minimal_prediction_parses() {
        let parsed: Prediction = serde_json::from_value(json!({"id": "p1", "status": "starting"})).unwrap();
        assert_eq!(parsed.input, serde_json::Value::Null);
        assert!(parsed.output_urls().is_empty());
    }

    #[test]
    fn the_error_is_text_whether_a_string_or_an_object() {
        assert_eq!(
            prediction(json!({"error": "CUDA out of memory"})).error_text().as_deref(),
            Some("CUDA out of memory")
        );
        assert_eq!(prediction(json!({"error": {"code": "E1"}})).error_text().as_deref(), Some(r#"{"code":"E1"}"#));
        assert_eq!(prediction(json!({"error": null})).error_text(), None);
    }

    #[test]
    fn progress_is_the_last_line_of_the_logs_and_bounded() {
        let logs = "Loading model\nstep 1/50\r 45%|####      | 23/50\r\n\n";
        assert_eq!(prediction(json!({"logs": logs})).progress().as_deref(), Some("45%|####      | 23/50"));
        assert_eq!(prediction(json!({"logs": "\n \n"})).progress(), None);
        let long = "é".repeat(500);
        assert_eq!(prediction(json!({"logs": long})).progress().unwrap().chars().count(), 200);
    }
}
