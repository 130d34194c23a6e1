//! Cloud's two authorization layers: the policy layer (token scope, then
//! binding-scope proof for gateway-scoped callers) run before every handler, and the lookups
//! handlers share to name the channel binding a call is about and to check its actor.

// Lookups fail with the finished error response, which is what the handler returns as is.
#![allow(clippy::result_large_err)]

use http::Response;

use crate::devcloud::call::{Call, Route};
use crate::devcloud::respond::{binding_scope_required, error, policy_error};
use crate::devcloud::store::ChannelBinding;
use crate::devcloud::DevCloud;
use crate::http::response::ResponseBody;

/// Who may call a route (Cloud's policy matrix, reduced to what the gateway exercises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Channel service actions: `gateway`-scoped tokens only, with binding-scope proof.
    Service,
    /// Identity and delivery read/write: `gateway` (with proof) or `admin` tokens.
    GatewayOrAdmin,
    /// Setup calls: `admin` tokens.
    Admin,
}

impl Route {
    fn access(&self) -> Access {
        match self {
            Route::ResolveIdentity | Route::ListDeliveries | Route::RetryDelivery(_) | Route::DeadLetter(_) => {
                Access::GatewayOrAdmin
            }
            Route::CreateAgent
            | Route::CreateBinding
            | Route::CreateToken
            | Route::GrantToken(_)
            | Route::RevokeToken(_) => Access::Admin,
            _ => Access::Service,
        }
    }
}

/// The policy layer: scope, then binding-scope proof for gateway-scoped callers.
pub(super) fn authorize(cloud: &DevCloud, call: &Call) -> Option<Response<ResponseBody>> {
    let principal = &call.principal;
    let scope_required = || {
        policy_error(
            403,
            "The authenticated service token is not authorized for this workspace action.",
            "authorization.scope_required",
        )
    };
    let access = call.route.access();
    match access {
        Access::Service if !principal.has("gateway") => return Some(scope_required()),
        Access::GatewayOrAdmin if !principal.has("gateway") && !principal.has("admin") => return Some(scope_required()),
        Access::Admin if !principal.has("admin") => return Some(scope_required()),
        _ => {}
    }
    let needs_proof = access == Access::Service || (access == Access::GatewayOrAdmin && principal.is_gateway_only());
    if !needs_proof {
        return None;
    }
    let store = cloud.store.borrow();
    let granted_active = |binding_id: &str| {
        principal.grants.iter().any(|g| g == binding_id)
            && store.channel_binding(binding_id).is_some_and(|b| b.status == "active")
    };
    if !principal.grants.iter().any(|g| granted_active(g)) {
        return Some(binding_scope_required());
    }
    let session_binding_ok = |id: &str| {
        store.session_binding(id).is_some_and(|b| b.status == "active" && granted_active(&b.channel_binding_id))
    };
    let ok = match &call.route {
        Route::Snapshot(id) | Route::SessionEvents(id) | Route::Artifact(id, _) => session_binding_ok(id),
        Route::ListDeliveries | Route::DeliveryStream => {
            call.query_values("channelBindingId").iter().all(|b| granted_active(b))
        }
        Route::FindByThread | Route::ResolveInteraction => true,
        route => match call.text("channelBindingId") {
            Some(binding) => granted_active(&binding),
            None => match route {
                Route::Prompt | Route::Cursor => call.text("bindingId").is_none_or(|id| session_binding_ok(&id)),
                Route::CreateInteraction => call.text("sessionBindingId").is_none_or(|id| session_binding_ok(&id)),
                _ => true,
            },
        },
    };
    (!ok).then(binding_scope_required)
}

/// `externalWorkspaceId`: omitted (`None`) or present, possibly null (`Some(None)`).
fn workspace_field(call: &Call) -> Option<Option<String>> {
    call.body.get("externalWorkspaceId").map(|v| v.as_str().map(str::to_owned))
}

/// Resolves the channel binding a gateway call is about: explicit, or the unique granted active
/// binding for the provider (and workspace).
pub(super) fn resolve_channel_binding(
    cloud: &DevCloud,
    call: &Call,
    provider: &str,
) -> Result<ChannelBinding, Response<ResponseBody>> {
    let store = cloud.store.borrow();
    let in_scope = |b: &ChannelBinding| {
        b.status == "active" && (!call.principal.is_gateway_only() || call.principal.grants.contains(&b.binding_id))
    };
    let binding = match call.text("channelBindingId") {
        Some(id) => match store.channel_binding(&id) {
            Some(binding) if in_scope(binding) => binding.clone(),
            Some(binding) if binding.status != "active" => return Err(error(403, "Channel binding is not active.")),
            _ => return Err(error(403, "Gateway API token is not authorized for the requested channel binding.")),
        },
        None => {
            let workspace = workspace_field(call);
            let matches: Vec<&ChannelBinding> = store
                .channel_bindings
                .iter()
                .filter(|b| {
                    in_scope(b)
                        && b.provider == provider
                        && workspace.as_ref().is_none_or(|w| *w == b.external_workspace_id)
                })
                .collect();
            match matches.as_slice() {
                [one] => (*one).clone(),
                [] => return Err(error(403, "Gateway API token is not authorized for the requested channel binding.")),
                _ => {
                    return Err(error(
                        400,
                        "Channel identity resolution requires channelBindingId when multiple channel bindings match.",
                    ))
                }
            }
        }
    };
    if binding.provider != provider {
        return Err(error(400, "Channel provider does not match binding."));
    }
    if let Some(workspace) = workspace_field(call) {
        if workspace != binding.external_workspace_id {
            return Err(error(403, "Channel binding is not authorized for this provider workspace."));
        }
    }
    Ok(binding)
}

/// The actor must be an active identity of the provider with one of `roles`.
pub(super) fn actor_allowed(
    cloud: &DevCloud,
    call: &Call,
    provider: &str,
    workspace: &Option<String>,
    roles: &[&str],
) -> bool {
    let store = cloud.store.borrow();
    let identity = match call.text("identityId") {
        Some(id) => store.identities.iter().find(|i| i.identity_id == id),
        None => {
            let Some(user) = call.text("externalUserId") else { return false };
            let workspace = workspace_field(call).unwrap_or_else(|| workspace.clone());
            store
                .identities
                .iter()
                .find(|i| i.provider == provider && i.external_workspace_id == workspace && i.external_user_id == user)
        }
    };
    identity.is_some_and(|i| i.status == "active" && i.provider == provider && roles.contains(&i.role.as_str()))
}

pub(super) const PROMPT_ROLES: [&str; 3] = ["owner", "admin", "member"];
pub(super) const APPROVE_ROLES: [&str; 4] = ["owner", "admin", "member", "approver"];
