//! The hand-rolled route table: method + path segments, single-segment parameters that are
//! percent-decoded strictly (a bad escape or invalid UTF-8 is a 400, not upstream's 500).
//! Paths match exactly: no trailing slash, query ignored, a method mismatch is a 404.

use crate::util::percent::percent_decode;
use http::Method;

/// A matched route with its decoded parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    Metrics,
    Diagnostics,
    Status,
    Deliveries,
    DeliveryRetry { delivery_id: String },
    DeliveryDeadLetter { delivery_id: String },
    Webhook { provider_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// A parameter segment is not valid percent-encoded UTF-8.
    BadEncoding,
}

/// One path segment of a route pattern.
#[derive(Debug, Clone, Copy)]
pub enum Segment {
    Literal(&'static str),
    /// A single non-empty segment, percent-decoded.
    Param,
    /// A single non-empty segment taken as written (upstream Cloud does not decode ids): the dev
    /// Cloud's routes.
    #[cfg(feature = "devcloud")]
    RawParam,
}

#[cfg(feature = "devcloud")]
use Segment::RawParam;
use Segment::{Literal, Param};

/// Builds a route from its decoded parameters, in pattern order.
pub type Build<R> = fn(Vec<String>) -> R;

/// A route table: checked in order, first match wins.
pub type Table<R> = [(Method, &'static [Segment], Build<R>)];

/// The gateway's operator and webhook routes.
const GATEWAY_ROUTES: &Table<Route> = &[
    (Method::GET, &[Literal("health")], |_| Route::Health),
    (Method::GET, &[Literal("ready")], |_| Route::Ready),
    (Method::GET, &[Literal("metrics")], |_| Route::Metrics),
    (Method::GET, &[Literal("diagnostics")], |_| Route::Diagnostics),
    (Method::GET, &[Literal("status")], |_| Route::Status),
    (Method::GET, &[Literal("deliveries")], |_| Route::Deliveries),
    (Method::POST, &[Literal("deliveries"), Param, Literal("retry")], |mut p| Route::DeliveryRetry {
        delivery_id: p.remove(0),
    }),
    (Method::POST, &[Literal("deliveries"), Param, Literal("dead-letter")], |mut p| Route::DeliveryDeadLetter {
        delivery_id: p.remove(0),
    }),
    (Method::POST, &[Literal("webhooks"), Param], |mut p| Route::Webhook { provider_id: p.remove(0) }),
];

/// Matches a request path (without query) against the gateway's table.
pub fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    match_table(GATEWAY_ROUTES, method, path)
}

/// Matches a request path (without query) against a table.
pub fn match_table<R>(table: &Table<R>, method: &Method, path: &str) -> Result<R, RouteError> {
    let Some(rest) = path.strip_prefix('/') else { return Err(RouteError::NotFound) };
    let segments: Vec<&str> = rest.split('/').collect();
    for (route_method, pattern, build) in table {
        if route_method != method || pattern.len() != segments.len() {
            continue;
        }
        let literals_match = pattern.iter().zip(&segments).all(|(p, s)| match p {
            Literal(text) => text == s,
            Param => !s.is_empty(),
            #[cfg(feature = "devcloud")]
            RawParam => !s.is_empty(),
        });
        if !literals_match {
            continue;
        }
        let mut params = Vec::new();
        for (p, s) in pattern.iter().zip(&segments) {
            match p {
                Param => params.push(percent_decode(s).ok_or(RouteError::BadEncoding)?),
                #[cfg(feature = "devcloud")]
                RawParam => params.push((*s).to_owned()),
                Literal(_) => {}
            }
        }
        return Ok(build(params));
    }
    Err(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_exact_paths() {
        assert_eq!(route(&Method::GET, "/health"), Ok(Route::Health));
        assert_eq!(route(&Method::GET, "/ready"), Ok(Route::Ready));
        assert_eq!(route(&Method::GET, "/metrics"), Ok(Route::Metrics));
        assert_eq!(route(&Method::GET, "/diagnostics"), Ok(Route::Diagnostics));
        assert_eq!(route(&Method::GET, "/status"), Ok(Route::Status));
        assert_eq!(route(&Method::GET, "/deliveries"), Ok(Route::Deliveries));
        assert_eq!(route(&Method::GET, "/health/"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/health"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, "/heal%74h"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, ""), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, "/"), Err(RouteError::NotFound));
    }

    #[test]
    fn params_are_single_decoded_segments() {
        assert_eq!(
            route(&Method::POST, "/deliveries/d%201/retry"),
            Ok(Route::DeliveryRetry { delivery_id: "d 1".into() })
        );
        assert_eq!(
            route(&Method::POST, "/deliveries/a%2Fb/dead-letter"),
            Ok(Route::DeliveryDeadLetter { delivery_id: "a/b".into() })
        );
        assert_eq!(route(&Method::POST, "/webhooks/telegram"), Ok(Route::Webhook { provider_id: "telegram".into() }));
        assert_eq!(route(&Method::POST, "/webhooks/"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/webhooks/a/b"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, "/webhooks/telegram"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/deliveries/x/resend"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/webhooks/%zz"), Err(RouteError::BadEncoding));
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%G1"), None);
        assert_eq!(percent_decode("%C3"), None, "truncated UTF-8");
        assert_eq!(percent_decode("%FF"), None);
    }
}
