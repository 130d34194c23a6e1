//! The Prometheus text exposition (version 0.0.4) of the [`Metrics`] registry: families in
//! upstream's order, cumulative histogram buckets, escaped label values.

use std::fmt::Write;

use super::{
    binding_counts, direction_name, outcome_name, Histogram, Metrics, ProviderRecord, ProviderState, StatInfo,
    DELIVERY_BUCKETS_MS, PROVIDER_STATS, STACK, STATS_AFTER_LATENCY, STATS_BEFORE_LATENCY, STREAM_KINDS, STREAM_STATS,
    SURFACE, TELEMETRY_BUCKETS_MS,
};

impl Histogram {
    fn write(&self, out: &mut String, name: &str, bounds: &[f64], labels: &str) {
        let mut cumulative = 0;
        let separator = if labels.is_empty() { "" } else { "," };
        for (index, count) in self.counts.iter().enumerate() {
            cumulative += count;
            let le = bounds.get(index).map_or_else(|| "+Inf".to_owned(), |b| format_number(*b));
            let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", format_number(self.sum));
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// `open_cowork_gateway_ready`: readiness lives above the registry (it reads the channels and
/// the Cloud streams), so the `/metrics` route appends it with what `/ready` would answer.
pub fn write_ready(out: &mut String, ready: bool) {
    header(out, "open_cowork_gateway_ready", "gauge", "1 while /ready answers 200.");
    let _ = writeln!(out, "open_cowork_gateway_ready {}", u8::from(ready));
}

impl Metrics {
    fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Prometheus text exposition, version 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let providers = self.providers.borrow();
        header(&mut out, "open_cowork_gateway_uptime_seconds", "gauge", "Seconds since the gateway started.");
        let _ = writeln!(out, "open_cowork_gateway_uptime_seconds {}", self.uptime_seconds());
        header(&mut out, "open_cowork_gateway_providers", "gauge", "Enabled providers.");
        let _ = writeln!(out, "open_cowork_gateway_providers {}", providers.len());
        for stat in &STATS_BEFORE_LATENCY {
            self.write_stat(&mut out, stat);
        }
        header(
            &mut out,
            "open_cowork_gateway_delivery_latency_ms",
            "histogram",
            "Delivery latency from claim to acknowledgement, in milliseconds.",
        );
        self.delivery_latency.borrow().write(
            &mut out,
            "open_cowork_gateway_delivery_latency_ms",
            &DELIVERY_BUCKETS_MS,
            "",
        );
        for stat in &STATS_AFTER_LATENCY {
            self.write_stat(&mut out, stat);
        }
        if !providers.is_empty() {
            let mut sorted: Vec<&ProviderRecord> = providers.iter().collect();
            sorted.sort_by(|a, b| a.id.cmp(&b.id));
            write_provider_families(&mut out, &sorted);
        }
        self.write_channel_telemetry(&mut out, &providers);
        header(
            &mut out,
            "open_cowork_gateway_provider_events_total",
            "counter",
            "Provider-specific events (Telegram updates, sends, edits, rate limits).",
        );
        for ((provider, event), value) in self.provider_events.borrow().iter() {
            let _ = writeln!(
                out,
                "open_cowork_gateway_provider_events_total{{provider_id=\"{}\",event=\"{event}\"}} {value}",
                escape_label(provider)
            );
        }
        for (stat_index, (_, name, _, help)) in STREAM_STATS.iter().enumerate() {
            header(&mut out, name, "counter", help);
            for (kind_index, (_, kind)) in STREAM_KINDS.iter().enumerate() {
                let _ = writeln!(out, "{name}{{stream=\"{kind}\"}} {}", self.streams[kind_index][stat_index].get());
            }
        }
        header(
            &mut out,
            "open_cowork_gateway_degraded",
            "gauge",
            "Problems the gateway serves with (it stays ready), by reason: channels or chats affected.",
        );
        for (reason, count) in self.degraded.borrow().iter() {
            let _ = writeln!(out, "open_cowork_gateway_degraded{{reason=\"{reason}\"}} {count}");
        }
        header(&mut out, "open_cowork_gateway_build_info", "gauge", "Version and target of this binary.");
        let _ = writeln!(
            out,
            "open_cowork_gateway_build_info{{version=\"{}\",target=\"{}\"}} 1",
            escape_label(crate::VERSION),
            escape_label(crate::TARGET)
        );
        self.write_process(&mut out);
        out
    }

    /// The process's memory against its cgroup limit.
    fn write_process(&self, out: &mut String) {
        if let Some(bytes) = super::process::resident_bytes() {
            header(out, "open_cowork_gateway_resident_memory_bytes", "gauge", "Resident memory of the process.");
            let _ = writeln!(out, "open_cowork_gateway_resident_memory_bytes {bytes}");
        }
        // Always exported, 0 when there is none to read (no cgroup v2, or `max`), so a rule or a
        // panel that divides by it has a series; `/ (limit > 0)` leaves the unknown case out.
        header(
            out,
            "open_cowork_gateway_memory_limit_bytes",
            "gauge",
            "Memory limit of the process's cgroup (0: none known).",
        );
        let limit = super::process::memory_limit_bytes().unwrap_or(0);
        let _ = writeln!(out, "open_cowork_gateway_memory_limit_bytes {limit}");
    }

    fn write_stat(&self, out: &mut String, stat: &StatInfo) {
        header(out, stat.name, if stat.gauge { "gauge" } else { "counter" }, stat.help);
        let _ = writeln!(out, "{} {}", stat.name, self.get(stat.stat));
    }

    fn write_channel_telemetry(&self, out: &mut String, providers: &[ProviderRecord]) {
        header(out, "open_cowork_channel_stack_info", "gauge", "Declared channel stacks.");
        let _ = writeln!(
            out,
            "open_cowork_channel_stack_info{{schema_version=\"2\",stack=\"{STACK}\",surface=\"{SURFACE}\"}} 1"
        );
        header(out, "open_cowork_channel_bindings", "gauge", "Channel bindings by kind and status.");
        for (kind, (configured, active)) in binding_counts(providers) {
            for (status, value) in [("active", active), ("configured", configured)] {
                let _ = writeln!(
                    out,
                    "open_cowork_channel_bindings{{provider_kind=\"{kind}\",stack=\"{STACK}\",status=\"{status}\",surface=\"{SURFACE}\"}} {value}"
                );
            }
        }
        header(out, "open_cowork_channel_messages_total", "counter", "Channel messages by direction and outcome.");
        for ((kind, direction, outcome), value) in self.channel_messages.borrow().iter() {
            let _ = writeln!(
                out,
                "open_cowork_channel_messages_total{{direction=\"{}\",outcome=\"{}\",provider_kind=\"{kind}\",schema_version=\"2\",stack=\"{STACK}\",surface=\"{SURFACE}\"}} {value}",
                direction_name(*direction),
                outcome_name(*outcome)
            );
        }
        header(
            out,
            "open_cowork_channel_operation_latency_ms",
            "histogram",
            "Channel operation latency in milliseconds.",
        );
        for ((kind, direction, outcome), histogram) in self.channel_latency.borrow().iter() {
            let labels = format!(
                "direction=\"{}\",outcome=\"{}\",provider_kind=\"{kind}\",schema_version=\"2\",stack=\"{STACK}\",surface=\"{SURFACE}\"",
                direction_name(*direction),
                outcome_name(*outcome)
            );
            histogram.write(out, "open_cowork_channel_operation_latency_ms", &TELEMETRY_BUCKETS_MS, &labels);
        }
    }
}

fn write_provider_families(out: &mut String, records: &[&ProviderRecord]) {
    let labels =
        |r: &ProviderRecord| format!("provider_id=\"{}\",provider_kind=\"{}\"", escape_label(&r.id), r.kind.as_str());
    header(out, "open_cowork_gateway_provider_state", "gauge", "Provider lifecycle state (1 for the current state).");
    for record in records {
        for state in ProviderState::ALL {
            let value = u8::from(record.state == state);
            let _ = writeln!(
                out,
                "open_cowork_gateway_provider_state{{{},state=\"{}\"}} {value}",
                labels(record),
                state.as_str()
            );
        }
    }
    for (index, (_, suffix, _, help)) in PROVIDER_STATS.iter().enumerate() {
        let name = format!("open_cowork_gateway_provider_{suffix}");
        header(out, &name, "counter", help);
        for record in records {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(record), record.counters[index]);
        }
    }
    let name = "open_cowork_gateway_provider_delivery_latency_ms";
    header(out, name, "histogram", "Delivery latency per provider, in milliseconds.");
    for record in records {
        record.delivery_latency.write(out, name, &DELIVERY_BUCKETS_MS, &labels(record));
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value for the text format: `\`, newline and `"`.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::super::{ProviderStat, ProviderState};
    use super::*;

    #[test]
    fn families_keep_upstream_order() {
        let text = Metrics::new(&config()).render_prometheus();
        let positions: Vec<usize> = [
            "# TYPE open_cowork_gateway_uptime_seconds gauge",
            "# TYPE open_cowork_gateway_providers gauge",
            "# TYPE open_cowork_gateway_deliveries_sent_total counter",
            "# TYPE open_cowork_gateway_delivery_latency_ms histogram",
            "# TYPE open_cowork_gateway_webhook_requests_total counter",
            "# TYPE open_cowork_gateway_session_streams gauge",
            "# TYPE open_cowork_gateway_delivery_duplicates_suppressed_total counter",
            "# TYPE open_cowork_gateway_provider_state gauge",
            "# TYPE open_cowork_gateway_provider_webhook_requests_total counter",
            "# TYPE open_cowork_gateway_provider_delivery_latency_ms histogram",
            "# TYPE open_cowork_channel_stack_info gauge",
            "# TYPE open_cowork_channel_messages_total counter",
            "# TYPE open_cowork_gateway_build_info gauge",
        ]
        .iter()
        .map(|needle| text.find(needle).unwrap_or_else(|| panic!("missing {needle}")))
        .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.ends_with('\n'));
        assert!(text.contains("open_cowork_gateway_providers 2\n"));
        assert!(text.contains("open_cowork_gateway_delivery_latency_ms_bucket{le=\"+Inf\"} 0\n"));
    }

    #[test]
    fn provider_series_are_sorted_labelled_and_six_states_each() {
        let metrics = Metrics::new(&config());
        metrics.set_provider_state("webhook-b", ProviderState::Healthy);
        metrics.increment_provider("webhook-b", ProviderStat::WebhookRequests);
        metrics.increment_provider("not-configured", ProviderStat::WebhookRequests);
        let text = metrics.render_prometheus();
        let fake_state = text.find("open_cowork_gateway_provider_state{provider_id=\"fake\",provider_kind=\"fake\",state=\"configured\"} 1").unwrap();
        let webhook_state =
            text.find("open_cowork_gateway_provider_state{provider_id=\"webhook-b\",provider_kind=\"webhook\",state=\"healthy\"} 1").unwrap();
        assert!(fake_state < webhook_state);
        assert_eq!(text.matches("open_cowork_gateway_provider_state{").count(), 12);
        assert!(text.contains("open_cowork_gateway_provider_webhook_requests_total{provider_id=\"webhook-b\",provider_kind=\"webhook\"} 1\n"));
        assert!(!text.contains("not-configured"));
        assert!(text.contains("open_cowork_channel_bindings{provider_kind=\"other\",stack=\"monorepo-provider\",status=\"configured\",surface=\"cloud-channel-gateway\"} 1"));
        assert!(text.contains("open_cowork_channel_bindings{provider_kind=\"webhook\",stack=\"monorepo-provider\",status=\"active\",surface=\"cloud-channel-gateway\"} 1"));
        assert_eq!(text.matches("open_cowork_channel_messages_total{").count(), 20, "10 pre-created series per kind");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::new(&config());
        metrics.observe_delivery_latency("webhook-b", 70.0);
        metrics.observe_delivery_latency("webhook-b", 40_000.0);
        let text = metrics.render_prometheus();
        assert!(text.contains("open_cowork_gateway_delivery_latency_ms_bucket{le=\"50\"} 0\n"));
        assert!(text.contains("open_cowork_gateway_delivery_latency_ms_bucket{le=\"100\"} 1\n"));
        assert!(text.contains("open_cowork_gateway_delivery_latency_ms_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("open_cowork_gateway_delivery_latency_ms_sum 40070\n"));
        assert!(text.contains("open_cowork_gateway_provider_delivery_latency_ms_count{provider_id=\"webhook-b\",provider_kind=\"webhook\"} 2\n"));
    }

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
