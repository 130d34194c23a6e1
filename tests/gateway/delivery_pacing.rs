//! Deliveries that should only be delayed are never lost: a burst of Telegram 429s is waited
//! out (no attempt used, nothing dead), sends to one chat keep Telegram's pace without being told,
//! and a host clock hours away from Cloud's still sends everything. The dev Cloud and a fake Bot
//! API on loopback.

#![cfg(all(feature = "devcloud", feature = "telegram"))]

use crate::support;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use open_cowork_gateway::app::Running;
use open_cowork_gateway::devcloud::DevCloud;
use open_cowork_gateway::metrics::{Stat, StreamKind, StreamStat};
use serde_json::{json, Value};
use support::fake_telegram::{self, FakeBot, Shared, TOKEN};
use support::test_gateway::{dev_cloud, quick_agent_options, quiet_factory, start_gateway};
use support::{eventually_within, run, run_paused};

struct World {
    cloud: Rc<DevCloud>,
    bot: Shared,
    cloud_url: String,
    bot_url: String,
    token: String,
}

async fn world() -> World {
    let (cloud, seeded, cloud_url) = dev_cloud(quick_agent_options()).await;
    let token = seeded.gateway_token;
    let bot: Shared = Rc::new(RefCell::new(FakeBot::default()));
    let bot_url = fake_telegram::start(Rc::clone(&bot)).await;
    World { cloud, bot, cloud_url, bot_url, token }
}

async fn gateway(world: &World) -> Running {
    let settings = [
        ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", TOKEN),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL", world.bot_url.as_str()),
    ];
    let running = start_gateway(&world.cloud_url, &world.token, "pacing", &settings, quiet_factory()).await;
    let registration = || running.registry.get("telegram").map(|r| r.can_send()).unwrap_or(false);
    eventually_within(Duration::from_secs(20), "the bot can send", registration).await;
    running
}

fn status(cloud: &DevCloud, id: &str) -> Value {
    cloud.delivery("telegram", id).map(|d| d["status"].clone()).unwrap_or(Value::Null)
}

fn ack_statuses(cloud: &DevCloud, id: &str) -> Vec<String> {
    cloud.records.borrow().acks_of(id).map(|a| a.calls.iter().map(|c| c.status.clone()).collect()).unwrap_or_default()
}

/// The scenario: ten deliveries at once, each text's first two `sendMessage` answered
/// `429 retry_after: 3`. Before, seven were dead ("circuit open") and three sent a minute late.
#[test]
fn a_burst_of_429s_is_waited_out_and_nothing_is_dead() {
    run_paused(async {
        let world = world().await;
        let running = gateway(&world).await;
        let ids: Vec<String> = (0..10).map(|n| format!("burst-{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            let text = format!("burst text {n}");
            for _ in 0..2 {
                let wanted = text.clone();
                world.bot.borrow_mut().error_once_if(
                    "sendMessage",
                    move |body| body["text"] == wanted.as_str(),
                    429,
                    "Too Many Requests: retry after 3",
                    Some(json!({"retry_after": 3})),
                );
            }
            world.cloud.enqueue_delivery(
                "telegram",
                id,
                json!({"externalChatId": (1000 + n).to_string()}),
                json!({"text": text}),
            );
        }
        let settled =
            || ids.iter().all(|id| ["sent", "dead"].contains(&status(&world.cloud, id).as_str().unwrap_or("")));
        eventually_within(Duration::from_secs(15), "all ten settled within 15 s of paused time", settled).await;
        for id in &ids {
            assert_eq!(status(&world.cloud, id), "sent", "{id}");
            assert_eq!(ack_statuses(&world.cloud, id), ["sent"], "{id}: no attempt used by the rate limit");
        }
        assert!(world.bot.borrow().scripted_if.is_empty(), "every text met its two 429s");
        assert_eq!(world.bot.borrow().texts_sent().len(), 30, "three tries per text, none more");
        assert_eq!(running.metrics.get(Stat::DeliveryDeadLetters), 0);
        assert_eq!(running.metrics.get(Stat::DeliveryRetries), 0);
        assert!(running.metrics.get(Stat::DeliveryRateLimitWaits) >= 20);
        assert!(running.registry.get("telegram").unwrap().can_send(), "no circuit opened");
        running.stop();
    });
}

#[test]
fn a_hundred_deliveries_to_one_chat_keep_telegrams_pace_unprompted() {
    run_paused(async {
        let world = world().await;
        world.bot.borrow_mut().per_chat_limit = Some(Duration::from_secs(1));
        let running = gateway(&world).await;
        let ids: Vec<String> = (0..100).map(|n| format!("paced-{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            world.cloud.enqueue_delivery(
                "telegram",
                id,
                json!({"externalChatId": "4242"}),
                json!({"text": format!("paced {n}")}),
            );
        }
        let all_sent = || ids.iter().all(|id| status(&world.cloud, id) == "sent");
        eventually_within(Duration::from_secs(115), "all 100 sent", all_sent).await;
        assert_eq!(world.bot.borrow().flood_refusals, 0, "never told to slow down");
        let times = world.bot.borrow().call_times("sendMessage");
        assert_eq!(times.len(), 100, "each sent once");
        assert!(times.windows(2).all(|pair| pair[1] - pair[0] >= Duration::from_secs(1)), "one a second");
        assert!(times[99] - times[0] < Duration::from_secs(105), "and not much slower: {:?}", times[99] - times[0]);
        let texts = world.bot.borrow().texts_sent();
        assert!(texts.iter().enumerate().all(|(n, t)| *t == format!("paced {n}")), "in order");
        running.stop();
    });
}

/// Log lines written on this thread while the returned guard lives.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(Arc::clone(&buffer));
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || sink.clone()).finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// The gateway's wall clock `offset_ms` away from Cloud's (the monotonic clock untouched): ten
/// deliveries, three of them failing once with a 502, after Cloud restarted once so the delivery
/// stream measured the clocks twice.
fn deliveries_go_out_with_the_clock_off_by(offset_ms: i64) {
    let (logs, _guard) = capture_logs();
    run(async {
        let world = world().await;
        open_cowork_gateway::time::set_wall_clock_offset(offset_ms);
        let running = gateway(&world).await;
        let reconnects = || running.metrics.stream_count(StreamKind::Delivery, StreamStat::Reconnects);
        eventually_within(Duration::from_secs(20), "the delivery stream", || {
            running.metrics.stream_count(StreamKind::Delivery, StreamStat::Connects) == 1
        })
        .await;
        let port: u16 = world.cloud_url.rsplit(':').next().unwrap().parse().unwrap();
        world.cloud.stop();
        tokio::time::sleep(Duration::from_millis(200)).await;
        world.cloud.start("127.0.0.1", port).await.unwrap();
        eventually_within(Duration::from_secs(20), "the stream reopened", || reconnects() >= 1).await;
        let started = open_cowork_gateway::time::system_now_ms();
        let ids: Vec<String> = (0..10).map(|n| format!("skewed-{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            let text = format!("skewed {n}");
            if n < 3 {
                let wanted = text.clone();
                world.bot.borrow_mut().error_once_if(
                    "sendMessage",
                    move |body| body["text"] == wanted.as_str(),
                    502,
                    "Bad Gateway",
                    None,
                );
            }
            world.cloud.enqueue_delivery(
                "telegram",
                id,
                json!({"externalChatId": (2000 + n).to_string()}),
                json!({"text": text}),
            );
        }
        let all_sent = || ids.iter().all(|id| status(&world.cloud, id) == "sent");
        eventually_within(Duration::from_secs(30), "all ten sent", all_sent).await;
        assert_eq!(running.metrics.get(Stat::DeliveryDeadLetters), 0);
        // The retry time written for Cloud is on Cloud's clock: about a second after the failure.
        for id in &ids[..3] {
            let records = world.cloud.records.borrow();
            let failed = records.acks_of(id).unwrap().calls.iter().find(|c| c.status == "failed").cloned().unwrap();
            let next = failed.next_attempt_at.as_ref().and_then(Value::as_str).unwrap();
            let next = open_cowork_gateway::time::parse_iso(next).unwrap();
            let now = open_cowork_gateway::time::system_now_ms();
            assert!(
                next >= started && next <= now + 5_000,
                "{id}: nextAttemptAt {next} is not on Cloud's clock ({now})"
            );
        }
        let skew = running.metrics.get(Stat::CloudClockSkewSeconds);
        assert!((7_190..=7_210).contains(&skew), "the gauge shows the skew: {skew}");
        running.stop();
        open_cowork_gateway::time::set_wall_clock_offset(0);
    });
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let warnings = logs.lines().filter(|l| l.contains("this host's clock is far from Cloud's")).count();
    assert_eq!(warnings, 1, "the skew is said once:\n{logs}");
}

#[test]
fn a_clock_two_hours_ahead_of_clouds_still_sends_everything() {
    deliveries_go_out_with_the_clock_off_by(2 * 3_600_000);
}

#[test]
fn a_clock_two_hours_behind_clouds_still_sends_everything() {
    deliveries_go_out_with_the_clock_off_by(-2 * 3_600_000);
}
