//! Which Replicate model runs each job kind, and how a job's fields fill that model's input:
//! configuration, with defaults for the models the reference product uses. A template is the
//! model's input JSON with `{field}` placeholders; rendering never invents a field a job does
//! not have.

use serde_json::{Map, Value};

use crate::model_ref::{InvalidModelRef, ModelRef};

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub model: ModelRef,
    /// The model's input with `{field}` placeholders; see [`ModelSpec::render`].
    pub input: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("bad model")]
    Model(#[from] InvalidModelRef),
    #[error("the input template is not JSON")]
    TemplateNotJson(#[source] serde_json::Error),
    #[error("the input template must be a JSON object")]
    TemplateNotObject,
    #[error("the input template names {field:?}, which the job does not have")]
    UnknownField { field: String },
}

impl ModelSpec {
    /// A spec from configuration: a model reference (see [`ModelRef`]) and the input template
    /// as JSON text.
    pub fn parse(model: &str, input_template: &str) -> Result<Self, ModelError> {
        let model = model.parse()?;
        let input: Value = serde_json::from_str(input_template).map_err(ModelError::TemplateNotJson)?;
        if !input.is_object() {
            return Err(ModelError::TemplateNotObject);
        }
        Ok(Self { model, input })
    }

    /// Fills the template with a job's fields:
    /// - a string that is exactly `"{name}"` becomes the field's JSON value (numbers stay numbers);
    /// - `{name}` inside a longer string is replaced by the field's text (a string as it is,
    ///   anything else as its JSON);
    /// - a field whose value is null drops the key (or list item) that uses it, so the model's
    ///   own default applies;
    /// - a placeholder naming a field the job does not have is an error naming it.
    ///
    /// Braces around anything but a name (`{ }`, `{"a"}`) are text, not placeholders.
    pub fn render(&self, fields: &Map<String, Value>) -> Result<Value, ModelError> {
        Ok(fill(&self.input, fields)?.unwrap_or(Value::Object(Map::new())))
    }
}

/// The filled value, or `None` when a null field drops it.
fn fill(template: &Value, fields: &Map<String, Value>) -> Result<Option<Value>, ModelError> {
    match template {
        Value::String(text) => fill_text(text, fields),
        Value::Array(items) => {
            let mut filled = Vec::with_capacity(items.len());
            for item in items {
                filled.extend(fill(item, fields)?);
            }
            Ok(Some(Value::Array(filled)))
        }
        Value::Object(entries) => {
            let mut filled = Map::new();
            for (key, value) in entries {
                if let Some(value) = fill(value, fields)? {
                    filled.insert(key.clone(), value);
                }
            }
            Ok(Some(Value::Object(filled)))
        }
        other => Ok(Some(other.clone())),
    }
}

fn fill_text(text: &str, fields: &Map<String, Value>) -> Result<Option<Value>, ModelError> {
    let lookup = |name: &str| fields.get(name).ok_or_else(|| ModelError::UnknownField { field: name.to_string() });
    if let Some(name) = whole_placeholder(text) {
        let value = lookup(name)?;
        return Ok((!value.is_null()).then(|| value.clone()));
    }
    let mut filled = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        filled.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').map(|close| &after[..close]).filter(|name| is_name(name)) {
            Some(name) => {
                match lookup(name)? {
                    Value::Null => return Ok(None),
                    Value::String(value) => filled.push_str(value),
                    value => filled.push_str(&value.to_string()),
                }
                rest = &after[name.len() + 1..];
            }
            None => {
                filled.push('{');
                rest = after;
            }
        }
    }
    filled.push_str(rest);
    Ok(Some(Value::String(filled)))
}

fn whole_placeholder(text: &str) -> Option<&str> {
    text.strip_prefix('{')?.strip_suffix('}').filter(|name| is_name(name))
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The model behind each asynchronous job kind (reframe has one for images and one for videos).
#[derive(Debug, Clone, PartialEq)]
pub struct Models {
    pub static_ad: ModelSpec,
    pub tts: ModelSpec,
    pub i2v: ModelSpec,
    pub reframe_image: ModelSpec,
    pub reframe_video: ModelSpec,
    pub ugc_video: ModelSpec,
}

impl Default for Models {
    /// The reference product's models, each run as an official model (whatever version
    /// Replicate serves), with the input names from each model's published schema.
    fn default() -> Self {
        let spec = |model: &str, input: Value| ModelSpec {
            model: model.parse().expect("the default models are valid references"),
            input,
        };
        Self {
            // Flux 1.1 Pro: `aspect_ratio` takes our ratios as they are ("1:1", "9:16", "4:5",
            // "16:9"); PNG so the ad is not recompressed before we store it.
            static_ad: spec(
                "black-forest-labs/flux-1.1-pro",
                serde_json::json!({"prompt": "{prompt}", "aspect_ratio": "{aspect_ratio}", "output_format": "png"}),
            ),
            // Minimax Speech 02 Turbo: `voice_id` is one of its named voices; `speed` a number
            // (0.5 to 2), passed through as one.
            tts: spec(
                "minimax/speech-02-turbo",
                serde_json::json!({"text": "{text}", "voice_id": "{voice}", "speed": "{speed}"}),
            ),
            // Wan 2.2 image-to-video, fast: the first frame's URL and a motion prompt.
            i2v: spec("wan-video/wan-2.2-i2v-fast", serde_json::json!({"image": "{image_url}", "prompt": "{prompt}"})),
            // Luma Reframe Image: the image by URL (`image`) and the target aspect ratio.
            reframe_image: spec(
                "luma/reframe-image",
                serde_json::json!({"image": "{source_url}", "aspect_ratio": "{aspect_ratio}"}),
            ),
            // Luma Reframe Video: the video by URL (`video_url`, at most 30 s) and the target ratio.
            reframe_video: spec(
                "luma/reframe-video",
                serde_json::json!({"video_url": "{source_url}", "aspect_ratio": "{aspect_ratio}"}),
            ),
            // OmniHuman: a portrait (the avatar) lip-synced to a voice track. CutX hands it the
            // avatar and the script; OmniHuman's own schema wants the voice as an audio URL, so
            // a deployment points this at a script-driven avatar model, or at a chain of its own,
            // through CUTX_REPLICATE_MODEL_UGC_VIDEO / CUTX_REPLICATE_INPUT_UGC_VIDEO.
            ugc_video: spec(
                "bytedance/omni-human",
                serde_json::json!({"image": "{avatar_url}", "text": "{script}", "voice": "{voice}"}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_template_renders_from_a_jobs_fields() {
        let job = fields(json!({
            "prompt": "a red shoe", "speed": 1.25, "count": 3, "flag": true, "seed": null,
            "tags": ["a", "b"], "ratio": "9:16"
        }));
        let cases = [
            (json!({"speed": "{speed}"}), json!({"speed": 1.25})),
            (
                json!({"n": "{count}", "on": "{flag}", "tags": "{tags}"}),
                json!({"n": 3, "on": true, "tags": ["a", "b"]}),
            ),
            (json!({"p": "Ad: {prompt}, {ratio}"}), json!({"p": "Ad: a red shoe, 9:16"})),
            (json!({"p": "{count}x at {speed}"}), json!({"p": "3x at 1.25"})),
            (json!({"seed": "{seed}", "p": "{prompt}"}), json!({"p": "a red shoe"})),
            (json!({"p": "seed {seed}", "q": 1}), json!({"q": 1})),
            (json!({"list": ["{prompt}", "{seed}"]}), json!({"list": ["a red shoe"]})),
            (json!({"nested": {"p": "{prompt}"}}), json!({"nested": {"p": "a red shoe"}})),
            (json!({"fixed": "png", "n": 4, "b": false}), json!({"fixed": "png", "n": 4, "b": false})),
            (
                json!({"p": "{ not a field } {\"json\"} {} {prompt"}),
                json!({"p": "{ not a field } {\"json\"} {} {prompt"}),
            ),
        ];
        for (input, expected) in cases {
            let spec = ModelSpec { model: "owner/model".parse().unwrap(), input: input.clone() };
            assert_eq!(spec.render(&job).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn a_template_naming_an_unknown_field_is_an_error_naming_it() {
        for input in [json!({"p": "{missing}"}), json!({"p": "x {missing} y"}), json!({"a": ["{missing}"]})] {
            let spec = ModelSpec { model: "owner/model".parse().unwrap(), input };
            match spec.render(&Map::new()) {
                Err(ModelError::UnknownField { field }) => assert_eq!(field, "missing"),
                other => panic!("expected an unknown field, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_spec_parses_from_configuration_text() {
        let spec = ModelSpec::parse("minimax/speech-02-turbo", r#"{"text": "{text}"}"#).unwrap();
        assert_eq!(spec.model, ModelRef::Official { owner: "minimax".into(), name: "speech-02-turbo".into() });
        assert!(matches!(ModelSpec::parse("nope", "{}"), Err(ModelError::Model(_))));
        assert!(matches!(ModelSpec::parse("a/b", "{"), Err(ModelError::TemplateNotJson(_))));
        assert!(matches!(ModelSpec::parse("a/b", r#"["{text}"]"#), Err(ModelError::TemplateNotObject)));
    }

    #[test]
    fn the_default_models_render_a_static_ad_as_flux_expects() {
        let models = Models::default();
        let input = models.static_ad.render(&fields(json!({"prompt": "a red shoe", "aspect_ratio": "4:5"}))).unwrap();
        assert_eq!(input, json!({"prompt": "a red shoe", "aspect_ratio": "4:5", "output_format": "png"}));
        let speech = models.tts.render(&fields(json!({"text": "Hi", "voice": "Wise_Woman", "speed": 1.0}))).unwrap();
        assert_eq!(speech, json!({"text": "Hi", "voice_id": "Wise_Woman", "speed": 1.0}));
    }

    #[test]
    fn every_default_model_is_an_official_model() {
        let Models { static_ad, tts, i2v, reframe_image, reframe_video, ugc_video } = Models::default();
        for spec in [static_ad, tts, i2v, reframe_image, reframe_video, ugc_video] {
            assert!(matches!(spec.model, ModelRef::Official { .. }), "{spec:?}");
            assert!(spec.input.is_object());
        }
    }
}
