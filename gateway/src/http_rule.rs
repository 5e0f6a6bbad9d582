//! `google.api.http` path templates: parsing and matching.
//!
//! The grammar is the one `google/api/http.proto` documents:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! axum's router cannot express `{id}:cancel` or `{name=projects/*}`, so templates are matched
//! here. [`PathTemplate::precedence`] orders templates so that a route with a verb is tried before
//! one without, and a literal segment beats a variable at the first place two templates differ.

use std::cmp::Ordering;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Any,
    /// `**`: the rest of the path (zero or more segments); only last.
    Rest,
}

/// A `{field.path=...}` variable: the field it fills and the segments it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub field_path: Vec<String>,
    /// Index of the first segment it covers.
    pub start: usize,
    /// One past the last segment it covers.
    pub end: usize,
}

impl Variable {
    /// `a.b`, as written in the template.
    pub fn dotted(&self) -> String {
        self.field_path.join(".")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    pub segments: Vec<Segment>,
    pub variables: Vec<Variable>,
    pub verb: Option<String>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

/// The variables a request path bound, with their percent-decoded values.
pub type Bindings = Vec<(Variable, String)>;

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |reason| TemplateError { template: template.to_string(), reason };
        let rest = template.strip_prefix('/').ok_or_else(|| fail("must start with /"))?;
        let (body, verb) = split_verb(rest);
        if verb.is_some_and(|v| v.is_empty() || v.contains('/')) {
            return Err(fail("empty or invalid verb"));
        }
        let mut segments = Vec::new();
        let mut variables = Vec::new();
        let mut chars = body;
        loop {
            if let Some(after_brace) = chars.strip_prefix('{') {
                let close = after_brace.find('}').ok_or_else(|| fail("unclosed variable"))?;
                let inner = &after_brace[..close];
                let (path, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
                let field_path: Vec<String> = path.split('.').map(str::to_string).collect();
                if field_path.iter().any(|p| !is_ident(p)) {
                    return Err(fail("variable is not a field path"));
                }
                let start = segments.len();
                for part in pattern.split('/') {
                    segments.push(parse_plain_segment(part).ok_or_else(|| fail("bad segment in variable"))?);
                }
                variables.push(Variable { field_path, start, end: segments.len() });
                chars = &after_brace[close + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                segments.push(parse_plain_segment(&chars[..end]).ok_or_else(|| fail("bad segment"))?);
                chars = &chars[end..];
            }
            match chars.strip_prefix('/') {
                Some(next) => chars = next,
                None if chars.is_empty() => break,
                None => return Err(fail("a variable must span whole segments")),
            }
        }
        if segments.iter().rev().skip(1).any(|s| *s == Segment::Rest) {
            return Err(fail("** must be the last segment"));
        }
        Ok(Self { segments, variables, verb: verb.map(str::to_string), source: template.to_string() })
    }

    /// The template as written in the proto.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The OpenAPI form: every variable as `{a.b}`, the verb kept.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.segments.len() {
            out.push('/');
            if let Some(var) = self.variables.iter().find(|v| v.start == i) {
                out.push_str(&format!("{{{}}}", var.dotted()));
                i = var.end.max(i + 1);
                continue;
            }
            match &self.segments[i] {
                Segment::Literal(lit) => out.push_str(lit),
                Segment::Any => out.push('*'),
                Segment::Rest => out.push_str("**"),
            }
            i += 1;
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// Matches a request path (without query), binding the variables. `None` if it does not match.
    pub fn matches(&self, path: &str) -> Option<Bindings> {
        let rest = path.strip_prefix('/')?;
        let body = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = body.split('/').collect();
        let has_rest = self.segments.last() == Some(&Segment::Rest);
        let fixed = self.segments.len() - usize::from(has_rest);
        if parts.len() < fixed || (!has_rest && parts.len() != fixed) {
            return None;
        }
        for (segment, part) in self.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(lit) if lit != part => return None,
                Segment::Any if part.is_empty() => return None,
                _ => {}
            }
        }
        let mut bindings = Vec::with_capacity(self.variables.len());
        for var in &self.variables {
            let end = if var.end == self.segments.len() { parts.len() } else { var.end };
            let raw = &parts[var.start..end];
            let value = raw.iter().map(|p| percent_decode(p)).collect::<Option<Vec<_>>>()?.join("/");
            bindings.push((var.clone(), value));
        }
        Some(bindings)
    }

    /// Ordering for matching: `Less` means try `self` first.
    pub fn precedence(&self, other: &Self) -> Ordering {
        other
            .verb
            .is_some()
            .cmp(&self.verb.is_some())
            .then_with(|| {
                let rank = |t: &Self| t.segments.iter().map(segment_rank).collect::<Vec<_>>();
                rank(self).cmp(&rank(other))
            })
            .then_with(|| other.segments.len().cmp(&self.segments.len()))
    }
}

/// Literals first, then one-segment wildcards (named or not), then `**`.
fn segment_rank(segment: &Segment) -> u8 {
    match segment {
        Segment::Literal(_) => 0,
        Segment::Any => 1,
        Segment::Rest => 2,
    }
}

/// Splits off a `:verb` after the last segment; a colon inside `{...}` is not a verb.
fn split_verb(path: &str) -> (&str, Option<&str>) {
    let last_start = path.rfind(['/', '}']).map_or(0, |i| i + 1);
    match path[last_start..].rfind(':') {
        Some(i) => (&path[..last_start + i], Some(&path[last_start + i + 1..])),
        None => (path, None),
    }
}

fn parse_plain_segment(s: &str) -> Option<Segment> {
    match s {
        "" => None,
        "*" => Some(Segment::Any),
        "**" => Some(Segment::Rest),
        lit if lit.contains(['{', '}', '*', '=']) => None,
        lit => Some(Segment::Literal(lit.to_string())),
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap()
    }

    fn bound(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        t(template).matches(path).map(|b| b.into_iter().map(|(v, value)| (v.dotted(), value)).collect())
    }

    #[test]
    #[allow(clippy::type_complexity)] // the table reads best with its row type inline
    fn templates_parse_into_segments_variables_and_verb() {
        let cases: &[(&str, &[Segment], &[(&str, usize, usize)], Option<&str>)] = &[
            ("/api/jobs", &[Segment::Literal("api".into()), Segment::Literal("jobs".into())], &[], None),
            (
                "/api/jobs/{id}",
                &[Segment::Literal("api".into()), Segment::Literal("jobs".into()), Segment::Any],
                &[("id", 2, 3)],
                None,
            ),
            (
                "/v1/{name=projects/*}:cancel",
                &[Segment::Literal("v1".into()), Segment::Literal("projects".into()), Segment::Any],
                &[("name", 1, 3)],
                Some("cancel"),
            ),
            (
                "/v1/{a.b}/x",
                &[Segment::Literal("v1".into()), Segment::Any, Segment::Literal("x".into())],
                &[("a.b", 1, 2)],
                None,
            ),
            ("/files/{path=**}", &[Segment::Literal("files".into()), Segment::Rest], &[("path", 1, 2)], None),
        ];
        for (src, segments, vars, verb) in cases {
            let parsed = t(src);
            assert_eq!(parsed.segments, *segments, "{src}");
            let got: Vec<_> = parsed.variables.iter().map(|v| (v.dotted(), v.start, v.end)).collect();
            let want: Vec<_> = vars.iter().map(|(n, s, e)| (n.to_string(), *s, *e)).collect();
            assert_eq!(got, want, "{src}");
            assert_eq!(parsed.verb.as_deref(), *verb, "{src}");
        }
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["api/jobs", "/api/{id", "/api/{1id}", "/api/**/x", "/api/x{id}", "/api/jobs:", "/api//x"] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    #[allow(clippy::type_complexity)] // the table reads best with its row type inline
    fn paths_match_templates_and_bind_decoded_variables() {
        let cases: &[(&str, &str, Option<&[(&str, &str)]>)] = &[
            ("/api/jobs/{id}", "/api/jobs/42", Some(&[("id", "42")])),
            ("/api/jobs/{id}", "/api/jobs/a%20b", Some(&[("id", "a b")])),
            ("/api/jobs/{id}", "/api/jobs/", None),
            ("/api/jobs/{id}", "/api/jobs/1/2", None),
            ("/api/jobs/{id}/cancel", "/api/jobs/7/cancel", Some(&[("id", "7")])),
            ("/api/jobs/{id}/cancel", "/api/jobs/7/watch", None),
            ("/v1/{name=projects/*}:cancel", "/v1/projects/p1:cancel", Some(&[("name", "projects/p1")])),
            ("/v1/{name=projects/*}:cancel", "/v1/projects/p1", None),
            ("/v1/{name=projects/*}:cancel", "/v1/other/p1:cancel", None),
            ("/v1/{a.b}", "/v1/x", Some(&[("a.b", "x")])),
            ("/files/{path=**}", "/files/a/b/c", Some(&[("path", "a/b/c")])),
            ("/api/jobs", "/api/jobs", Some(&[])),
            ("/api/jobs", "/api/jobs/", None),
        ];
        for (template, path, want) in cases {
            let want = want.map(|w| w.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>());
            assert_eq!(bound(template, path), want, "{template} vs {path}");
        }
    }

    #[test]
    fn a_literal_segment_beats_a_variable() {
        let literal = t("/api/products/ingest");
        let variable = t("/api/products/{id}");
        assert_eq!(literal.precedence(&variable), Ordering::Less);
        assert_eq!(variable.precedence(&literal), Ordering::Greater);
    }

    #[test]
    fn a_verb_route_is_tried_before_a_plain_one() {
        let verb = t("/v1/{name}:cancel");
        let plain = t("/v1/{name}");
        assert_eq!(verb.precedence(&plain), Ordering::Less);
        // Both match "a:cancel"-style paths; the verb route must win.
        assert!(verb.matches("/v1/x:cancel").is_some() && plain.matches("/v1/x:cancel").is_some());
    }

    #[test]
    fn openapi_paths_name_each_variable_once() {
        assert_eq!(t("/api/jobs/{id}/cancel").openapi_path(), "/api/jobs/{id}/cancel");
        assert_eq!(t("/v1/{name=projects/*}:cancel").openapi_path(), "/v1/{name}:cancel");
        assert_eq!(t("/v1/{a.b}").openapi_path(), "/v1/{a.b}");
    }
}
