//! Artifacts a session created or updated: a new artifact small enough for the channel goes as a
//! file, anything else as a line with its name and its Cloud link. Each is shown once per event
//! sequence, so a replayed event does not show it again.

use serde_json::Value;

use super::plan::{message_texts, Plan, Show, Step};
use super::state::{Remember, RenderState};
use super::text::{redact_file_name, sanitize};
use super::{payload_text, RenderContext};
use crate::cloud::types::SessionEvent;

/// The artifact's id: named in the payload, else in its `cloud-artifact://<id>/…` path, else the
/// event's entity.
fn artifact_id(event: &SessionEvent) -> Option<String> {
    let payload = &event.payload;
    let from_path = payload_text(payload, &["filePath"])
        .and_then(|p| p.strip_prefix("cloud-artifact://"))
        .and_then(|rest| rest.split('/').next())
        .and_then(crate::util::percent::percent_decode);
    payload_text(payload, &["artifactId", "cloudArtifactId", "id"])
        .map(str::to_owned)
        .or(from_path)
        .or_else(|| event.rest.get("entityId").and_then(Value::as_str).map(str::to_owned))
}

/// A file name safe to show and to save: no path separators, secrets redacted.
fn file_name(payload: &Value) -> String {
    payload_text(payload, &["filename"])
        .map(|f| sanitize(&redact_file_name(&f.replace(['\\', '/', ':', '\0'], "-")), 180))
        .filter(|f| f != "." && f != "..")
        .unwrap_or_else(|| "artifact".into())
}

pub(super) fn render(context: &RenderContext<'_>, state: &RenderState, event: &SessionEvent) -> Plan {
    let payload = &event.payload;
    let Some(artifact_id) = artifact_id(event) else { return Plan::Nothing { message_id: None } };
    if state.artifact(&artifact_id).is_some_and(|seen| seen >= event.sequence) {
        return Plan::Nothing { message_id: None };
    }
    let filename = file_name(payload);
    let label = if event.event_type == "artifact.updated" {
        let status = payload_text(payload, &["status"]).map(|s| format!(" ({s})")).unwrap_or_default();
        sanitize(&format!("Artifact updated: {filename}{status}"), 180)
    } else {
        filename.clone()
    };
    let capabilities = context.capabilities;
    let link = message_texts(capabilities, &format!("{label}: {}", (context.artifact_url)(&artifact_id)));
    let size = payload.get("size").and_then(Value::as_u64).unwrap_or(0);
    let as_file = event.event_type == "artifact.created"
        && capabilities.file_downloads
        && size > 0
        && size <= capabilities.max_file_bytes as u64;
    let steps = if as_file {
        let max_bytes = capabilities.max_file_bytes;
        vec![Step::File { artifact_id: artifact_id.clone(), filename, max_bytes, link }]
    } else {
        link.into_iter().map(Step::Send).collect()
    };
    let remember = Remember::Artifact { id: artifact_id, sequence: event.sequence };
    Plan::Show(Show { steps, message_id: None, remember: Some(remember) })
}
