//! `GET /api/channels/sessions/{id}/artifacts/{artifactId}`: a session's artifact as upstream's
//! JSON record with the bytes inline (base64).

use http::Response;
use serde_json::{json, Value};

use crate::devcloud::respond::{binding_scope_required, error, json_response};
use crate::devcloud::DevCloud;
use crate::http::response::ResponseBody;

pub(super) fn artifact_route(cloud: &DevCloud, session_binding_id: &str, artifact_id: &str) -> Response<ResponseBody> {
    let store = cloud.store.borrow();
    let Some(binding) = store.session_binding(session_binding_id) else { return binding_scope_required() };
    let Some(artifact) =
        store.artifacts.iter().find(|a| a.artifact_id == artifact_id && a.session_id == binding.session_id)
    else {
        return error(404, "Cloud artifact was not found.");
    };
    let (_, now) = store.now();
    let mut body = json!({
        "artifactId": artifact.artifact_id, "id": artifact.artifact_id, "toolId": "cloud-artifact", "toolName": "cloud.artifact",
        "filePath": format!("cloud-artifact://{}/{}", crate::util::percent::encode_component(&artifact.artifact_id), crate::util::percent::encode_component(&artifact.filename)),
        "filename": artifact.filename, "order": 0, "source": "cloud", "cloudArtifactId": artifact.artifact_id, "sessionId": artifact.session_id,
        "sessionTitle": null, "workspaceId": null, "contentType": artifact.content_type, "size": artifact.data.len(), "createdAt": now, "updatedAt": now,
        "kind": "document", "status": "final", "dataBase64": crate::util::base64::encode_standard(&artifact.data),
    });
    if let Some(mime) = &artifact.content_type {
        body["mime"] = Value::from(mime.clone());
    }
    json_response(200, &json!({"artifact": body}))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(crate::util::base64::encode_standard(b""), "");
        assert_eq!(crate::util::base64::encode_standard(b"f"), "Zg==");
        assert_eq!(crate::util::base64::encode_standard(b"fo"), "Zm8=");
        assert_eq!(crate::util::base64::encode_standard(b"foo"), "Zm9v");
        assert_eq!(crate::util::base64::encode_standard(b"foobar"), "Zm9vYmFy");
    }
}
