//! Setup calls, `admin` tokens only: create agents and channel bindings, issue API tokens, grant
//! them channel bindings and revoke them.

use http::Response;
use serde_json::{json, Value};

use super::identities::valid_provider;
use crate::devcloud::call::Call;
use crate::devcloud::respond::{error, json_response};
use crate::devcloud::store::{random_base64url, ApiToken};
use crate::devcloud::DevCloud;
use crate::http::response::ResponseBody;

pub(super) fn create_agent(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let Some(name) = call.text("name") else { return error(400, "Headless agent requires name.") };
    let id = call.text("agentId").unwrap_or_else(|| format!("channel_agent_{}", random_base64url(12)));
    let agent = cloud.store.borrow_mut().add_agent(&id, &name);
    json_response(201, &json!({"agent": agent}))
}

pub(super) fn create_binding(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let (Some(agent_id), Some(provider)) = (call.text("agentId"), call.text("provider").filter(|p| valid_provider(p)))
    else {
        return error(400, "Channel binding requires agentId and provider.");
    };
    if !cloud.store.borrow().agents.iter().any(|a| a.agent_id == agent_id) {
        return error(404, "Headless agent was not found.");
    }
    let id = call.text("bindingId").unwrap_or_else(|| format!("channel_binding_{}", random_base64url(12)));
    let binding =
        cloud.store.borrow_mut().add_channel_binding(&id, &agent_id, &provider, call.text("externalWorkspaceId"));
    json_response(201, &json!({"binding": binding}))
}

fn token_json(token: &ApiToken) -> Value {
    json!({"tokenId": token.token_id, "scopes": token.scopes, "channelBindingIds": token.grants, "revoked": token.revoked})
}

pub(super) fn create_token(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let strings = |key: &str| -> Vec<String> {
        call.body
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let scopes = strings("scopes");
    if scopes.is_empty()
        || !scopes.iter().all(|s| ["desktop", "gateway", "admin", "operator", "worker-internal"].contains(&s.as_str()))
    {
        return error(400, "API token scopes are invalid.");
    }
    let token = cloud.store.borrow_mut().issue_token(scopes, strings("channelBindingIds"));
    json_response(201, &json!({"token": token_json(&token), "plaintext": token.plaintext}))
}

pub(super) fn grant_token(cloud: &DevCloud, call: &Call, token_id: &str) -> Response<ResponseBody> {
    let Some(binding) = call.text("channelBindingId") else {
        return error(400, "Channel binding grant requires channelBindingId.");
    };
    let mut store = cloud.store.borrow_mut();
    let org = store.org_id.clone();
    let (_, now) = store.now();
    let Some(token) = store.tokens.iter_mut().find(|t| t.token_id == token_id) else {
        return error(404, "API token was not found.");
    };
    if !token.has_scope("gateway") {
        return error(400, "Only gateway tokens accept channel binding grants.");
    }
    if !token.grants.contains(&binding) {
        token.grants.push(binding.clone());
    }
    json_response(
        200,
        &json!({"grant": {"orgId": org, "tokenId": token_id, "channelBindingId": binding, "createdAt": now}, "token": token_json(token)}),
    )
}

pub(super) fn revoke_token(cloud: &DevCloud, token_id: &str) -> Response<ResponseBody> {
    let mut store = cloud.store.borrow_mut();
    let Some(token) = store.tokens.iter_mut().find(|t| t.token_id == token_id) else {
        return error(404, "API token was not found.");
    };
    token.revoked = true;
    json_response(200, &json!({"token": token_json(token), "revoked": true}))
}
