//! The raw metrics object that `/diagnostics` shows: every stat under its JSON key, the
//! per-provider records, Cloud stream counts and the channel-stack telemetry (real counters;
//! upstream showed empty maps).

use serde_json::{json, Map, Value};

use crate::util::maps;

use super::{
    all_stats, binding_counts, direction_name, outcome_name, Histogram, Metrics, PROVIDER_STATS, STACK, STREAM_KINDS,
    STREAM_STATS, SURFACE,
};

impl Histogram {
    fn to_json(&self) -> Value {
        json!({"counts": self.counts, "sum": self.sum, "count": self.count})
    }
}

impl Metrics {
    /// The raw metrics object of `/diagnostics`, with real channel telemetry.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("startedAt".into(), self.started_at_ms.into());
        for stat in all_stats() {
            object.insert(stat.json_key.into(), self.get(stat.stat).into());
        }
        object.insert("deliveryLatency".into(), self.delivery_latency.borrow().to_json());
        let providers = self.providers.borrow();
        let provider_metrics = maps::object(providers.iter().map(|record| {
            let mut entry = Map::new();
            entry.insert("id".into(), record.id.clone().into());
            entry.insert("kind".into(), record.kind.as_str().into());
            entry.insert("state".into(), record.state.as_str().into());
            for (index, (_, _, key, _)) in PROVIDER_STATS.iter().enumerate() {
                entry.insert((*key).into(), record.counters[index].into());
            }
            entry.insert("deliveryLatency".into(), record.delivery_latency.to_json());
            (record.id.clone(), Value::Object(entry))
        }));
        object.insert("providerMetrics".into(), Value::Object(provider_metrics));
        let bindings = maps::object(binding_counts(&providers).into_iter().map(|(kind, (configured, active))| {
            (kind.to_owned(), json!({"configured": configured, "active": active}))
        }));
        let messages =
            maps::object(self.channel_messages.borrow().iter().map(|((kind, direction, outcome), value)| {
                (format!("{kind}.{}.{}", direction_name(*direction), outcome_name(*outcome)), *value)
            }));
        let latencies = maps::object(self.channel_latency.borrow().iter().map(|((kind, direction, outcome), h)| {
            (format!("{kind}.{}.{}", direction_name(*direction), outcome_name(*outcome)), h.to_json())
        }));
        let streams = maps::object(STREAM_KINDS.iter().enumerate().map(|(k, (_, kind))| {
            let counts = maps::object(
                STREAM_STATS
                    .iter()
                    .enumerate()
                    .map(|(s, (_, _, key, _))| ((*key).to_owned(), self.streams[k][s].get())),
            );
            ((*kind).to_owned(), Value::Object(counts))
        }));
        object.insert("cloudStreams".into(), Value::Object(streams));
        let mut provider_events = Map::new();
        for ((provider, event), value) in self.provider_events.borrow().iter() {
            let entry = provider_events.entry(provider.clone()).or_insert_with(|| Value::Object(Map::new()));
            entry[*event] = Value::from(*value);
        }
        object.insert("providerEvents".into(), Value::Object(provider_events));
        object.insert(
            "channelTelemetry".into(),
            json!({"surface": SURFACE, "stacks": {STACK: {"schemaVersion": 2}}, "bindings": bindings, "messages": messages, "latencies": latencies}),
        );
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    #[test]
    fn histograms_keep_per_bucket_counts() {
        let metrics = Metrics::new(&config());
        metrics.observe_delivery_latency("webhook-b", 70.0);
        metrics.observe_delivery_latency("webhook-b", 40_000.0);
        let json = metrics.to_json();
        assert_eq!(json["deliveryLatency"]["count"], 2);
        assert_eq!(json["providerMetrics"]["webhook-b"]["deliveryLatency"]["counts"][1], 1);
    }
}
