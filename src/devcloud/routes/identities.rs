//! `POST /api/channels/identities/resolve`: find or create the channel
//! identity of an external user, and the provider-id rule Cloud applies to every call.

use serde_json::json;

use super::authorize::resolve_channel_binding;
use crate::devcloud::call::Call;
use crate::devcloud::respond::{error, json_response, store_full};
use crate::devcloud::store::{Identity, MAX_RECORDS};
use crate::devcloud::DevCloud;
use crate::http::response::ResponseBody;
use crate::util::ids::random_id;
use http::Response;

/// The provider ids Cloud accepts (`readChannelProvider`): every channel kind's name (a kind that
/// stands in for another is seen as that one), or an id of the `<kind>-<name>` shape.
pub(super) fn valid_provider(provider: &str) -> bool {
    crate::providers::KINDS.iter().any(|kind| kind.parts.stands_in_for.is_none() && kind.name == provider)
        || (provider.len() >= 2
            && provider.len() <= 64
            && provider.as_bytes()[0].is_ascii_lowercase()
            && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && provider.contains('-'))
}

pub(super) fn resolve_identity(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let (Some(provider), Some(user)) =
        (call.text("provider").filter(|p| valid_provider(p)), call.text("externalUserId"))
    else {
        return error(400, "Channel identity resolution requires provider and externalUserId.");
    };
    let binding = match resolve_channel_binding(cloud, call, &provider) {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    let admin = call.principal.has("admin");
    let mut store = cloud.store.borrow_mut();
    let (_, now) = store.now();
    let metadata = call.body.get("metadata").filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({}));
    let workspace = binding.external_workspace_id.clone();
    let auto = store.auto_activate_identities;
    let org = store.org_id.clone();
    let index = store
        .identities
        .iter()
        .position(|i| i.provider == provider && i.external_workspace_id == workspace && i.external_user_id == user);
    let index = match index {
        Some(index) => index,
        None if store.identities.len() >= MAX_RECORDS => return store_full(),
        None => {
            let (role, status) = if auto { ("member", "active") } else { ("viewer", "pending") };
            store.identities.push(Identity {
                identity_id: random_id(),
                org_id: org,
                provider: provider.clone(),
                external_workspace_id: workspace,
                external_user_id: user,
                account_id: None,
                role: role.into(),
                status: status.into(),
                metadata: json!({}),
                created_at: now.clone(),
                updated_at: now.clone(),
            });
            store.identities.len() - 1
        }
    };
    let identity = &mut store.identities[index];
    identity.metadata = metadata;
    identity.updated_at = now;
    if admin {
        if let Some(role) =
            call.text("role").filter(|r| ["owner", "admin", "member", "approver", "viewer"].contains(&r.as_str()))
        {
            identity.role = role;
        }
        if let Some(status) = call.text("status").filter(|s| ["active", "disabled", "pending"].contains(&s.as_str())) {
            identity.status = status;
        }
    }
    json_response(200, &json!({"identity": identity}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids() {
        assert!(valid_provider("telegram"));
        assert!(valid_provider("telegram-prod"));
        assert!(!valid_provider("fake"));
        assert!(!valid_provider("Bad-Id"));
    }
}
