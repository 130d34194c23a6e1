//! `doctor` for a webhook or bridge relay: its delivery URL through the same URL policy as every
//! delivery (DNS answers included), then a connection to the pinned address with the TLS
//! handshake for `https` URLs. No request is sent.

use crate::channel::DoctorCheck;
use crate::config::providers::webhook::WebhookSettings;
use crate::net::url_policy::{resolve_pinned, PinnedClient, Resolver};

/// The check of one webhook or bridge entry.
pub async fn check(id: &str, settings: &WebhookSettings, resolver: &dyn Resolver) -> Vec<DoctorCheck> {
    let url = &settings.delivery_url;
    let name = format!("{id}: relay {}:{}", url.host, url.port);
    let address = match resolve_pinned(url, &settings.policy, resolver).await {
        Ok(address) => address,
        Err(refused) => {
            let fix = if refused.temporary {
                "check DNS"
            } else {
                "point deliveryUrl at a public host, or allow it with allowPrivateDelivery / deliveryUrlAllowedHosts"
            };
            return vec![DoctorCheck::fail(name, format!("{refused}: {fix}."))];
        }
    };
    let client = match PinnedClient::new() {
        Ok(client) => client,
        Err(error) => return vec![DoctorCheck::fail(name, error)],
    };
    let secure = url.uri.scheme_str() == Some("https");
    vec![match client.connect(url, address).await {
        Ok(()) if secure => DoctorCheck::pass(name, format!("allowed ({address}), TLS certificate valid")),
        Ok(()) => DoctorCheck::pass(name, format!("allowed ({address}), plain HTTP to localhost")),
        Err(error) => DoctorCheck::fail(name, format!("cannot connect to {address}: {error}")),
    }]
}
