//! The e-mail channel against the dev Cloud and an SMTP sink on loopback
//! (`support/smtp_sink.rs`): relay ingress with its shared secret, one prompt per mail, threaded
//! replies over SMTP (lettre), header injection attempts, SMTP reply classes on the delivery
//! path, and STARTTLS verified against a private CA. Nothing leaves loopback.

#![cfg(all(feature = "devcloud", feature = "email"))]

use crate::support;
use crate::support::smtp_sink;
use support::run;
use support::test_gateway::{dev_cloud, fast_cloud_options, quiet_factory, sessions_of, start_gateway};

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use open_cowork_gateway::app::Running;
use open_cowork_gateway::devcloud::DevCloud;
use serde_json::{json, Value};
use smtp_sink::{SharedSink, Sink, Stage};

const SECRET: &str = "relay-secret-for-the-email-tests";

struct World {
    cloud: Rc<DevCloud>,
    running: Running,
    sink: SharedSink,
}

async fn world(sink: Sink, extra: &[(&str, &str)]) -> World {
    let (cloud, seeded, cloud_url) = dev_cloud(fast_cloud_options()).await;
    let sink = Rc::new(RefCell::new(sink));
    let port = smtp_sink::start(Rc::clone(&sink)).await.port().to_string();
    let mail = [
        ("OPEN_COWORK_GATEWAY_EMAIL_INBOUND_SECRET", SECRET),
        ("OPEN_COWORK_GATEWAY_EMAIL_FROM", "Open Cowork Agent <agent@example.com>"),
        ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST", "127.0.0.1"),
        ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PORT", port.as_str()),
        ("OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS", "5000"),
    ];
    let settings = [&mail[..], extra].concat();
    let running = start_gateway(&cloud_url, &seeded.gateway_token, "mail", &settings, quiet_factory()).await;
    eventually("healthy", || running.registry.get("email").unwrap().is_healthy()).await;
    World { cloud, running, sink }
}

/// Prompts per session of `chat`, one entry per session.
fn prompts_per_session(cloud: &DevCloud, chat: &str) -> Vec<Vec<String>> {
    sessions_of(cloud, chat).iter().map(|s| cloud.prompts(s)).collect()
}

/// Posts `body` to `/webhooks/email` with the given headers; returns the status.
async fn post(running: &Running, body: &Value, headers: &[(&str, &str)]) -> u16 {
    let http = open_cowork_gateway::net::https::build_client(None).unwrap();
    let mut request = http::Request::post(format!("http://{}/webhooks/email", running.address))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(body.to_string()));
    http.request(request.body(body).unwrap()).await.unwrap().status().as_u16()
}

const WITH_SECRET: [(&str, &str); 1] = [("x-open-cowork-gateway-email-secret", SECRET)];

fn delivery_status(cloud: &DevCloud, id: &str) -> Value {
    cloud.delivery("email", id).map(|d| d["status"].clone()).unwrap_or(Value::Null)
}

#[test]
fn a_mail_becomes_one_prompt_and_the_reply_threads_back_into_the_same_session() {
    run(async {
        let world = world(Sink::default(), &[]).await;
        let first = json!({"messageId": "<m1@example.test>", "from": "\"Alice Example\" <Alice@Example.test>",
            "to": "agent@example.com", "subject": "Status", "text": "hello agent"});
        assert_eq!(post(&world.running, &first, &WITH_SECRET).await, 202);
        eventually("the reply mail", || !world.sink.borrow().accepted().is_empty()).await;
        assert_eq!(prompts_per_session(&world.cloud, "alice@example.test"), [["hello agent"]]);

        let reply = world.sink.borrow().accepted()[0].clone();
        assert_eq!(reply.mail_from, "agent@example.com", "the envelope uses the parsed address");
        assert_eq!(reply.rcpt_to, ["alice@example.test"]);
        assert_eq!(reply.header("From").as_deref(), Some("\"Open Cowork Agent\" <agent@example.com>"));
        assert_eq!(reply.header("To").as_deref(), Some("alice@example.test"));
        assert_eq!(reply.header("Subject").as_deref(), Some("Re: Status"), "threads by subject too");
        assert_eq!(reply.header("MIME-Version").as_deref(), Some("1.0"));
        assert_eq!(reply.header("In-Reply-To").as_deref(), Some("<m1@example.test>"));
        assert_eq!(reply.header("References").as_deref(), Some("<m1@example.test>"));
        let reply_id = reply.header("Message-ID").unwrap();
        assert!(reply_id.starts_with('<') && reply_id.ends_with("@open-cowork.local>"), "{reply_id}");
        assert!(reply.data.contains("echo: hello agent"), "{}", reply.data);

        // Alice answers the reply, as a mail client does: In-Reply-To the gateway's mail,
        // References the whole chain. Same session, second prompt.
        let second = json!({"messageId": "<m2@example.test>", "from": {"email": "alice@example.test", "name": "Alice"},
            "text": "and now?", "inReplyTo": reply_id, "references": format!("<m1@example.test> {reply_id}")});
        assert_eq!(post(&world.running, &second, &WITH_SECRET).await, 202);
        eventually("the second prompt", || {
            prompts_per_session(&world.cloud, "alice@example.test")
                == [vec!["hello agent".to_owned(), "and now?".to_owned()]]
        })
        .await;
        eventually("the second reply", || world.sink.borrow().accepted().len() == 2).await;
        let again = world.sink.borrow().accepted()[1].clone();
        assert_eq!(again.header("In-Reply-To").as_deref(), Some("<m2@example.test>"), "the mail it answers");
        assert_eq!(
            again.header("References").as_deref(),
            Some(format!("<m1@example.test> {reply_id} <m2@example.test>").as_str()),
            "the chain of the mail it answers, then its id"
        );
        assert_eq!(again.header("Subject").as_deref(), Some("Re: Status"), "the conversation's subject");
    });
}

#[test]
fn the_relay_posting_a_mail_twice_gets_202_and_one_prompt() {
    run(async {
        let world = world(Sink::default(), &[]).await;
        let mail = json!({"messageId": "<dup@example.test>", "from": "bob@example.test", "text": "only once"});
        assert_eq!(post(&world.running, &mail, &WITH_SECRET).await, 202);
        assert_eq!(post(&world.running, &mail, &[("authorization", &format!("Bearer {SECRET}"))]).await, 202);
        eventually("the reply", || !world.sink.borrow().accepted().is_empty()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(prompts_per_session(&world.cloud, "bob@example.test"), [["only once"]]);
        assert_eq!(world.sink.borrow().accepted().len(), 1);
    });
}

#[test]
fn a_wrong_or_missing_secret_is_401_and_nothing_is_prompted() {
    run(async {
        let world = world(Sink::default(), &[]).await;
        let mail = json!({"messageId": "<x@example.test>", "from": "eve@example.test", "text": "let me in",
            "inboundSecret": SECRET, "secret": SECRET});
        assert_eq!(post(&world.running, &mail, &[]).await, 401, "no secret (one in the body does not count)");
        assert_eq!(post(&world.running, &mail, &[("x-open-cowork-gateway-email-secret", "wrong")]).await, 401);
        assert_eq!(post(&world.running, &mail, &[("authorization", "Basic cmVsYXk6c2VjcmV0")]).await, 401);
        assert_eq!(post(&world.running, &mail, &[("authorization", "Bearer wrong")]).await, 401);
        let no_id = json!({"from": "eve@example.test", "text": "x"});
        assert_eq!(post(&world.running, &no_id, &WITH_SECRET).await, 400, "no message id: no replay protection");
        let no_sender = json!({"messageId": "<y@example.test>", "from": "nobody", "text": "x"});
        assert_eq!(post(&world.running, &no_sender, &WITH_SECRET).await, 202, "ignored");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(prompts_per_session(&world.cloud, "eve@example.test").is_empty());
        assert!(world.cloud.store.borrow().session_bindings.is_empty());
    });
}

#[test]
fn a_subject_or_address_with_line_breaks_injects_no_header() {
    run(async {
        let world = world(Sink::default(), &[]).await;
        let mail = json!({"messageId": "<inj@example.test>\r\nX-Injected: 1", "subject": "Update\r\nBcc: eve@evil.test",
            "from": "carol@example.test\r\nBcc: eve@evil.test", "text": "hi"});
        assert_eq!(post(&world.running, &mail, &WITH_SECRET).await, 202);
        eventually("the reply", || !world.sink.borrow().accepted().is_empty()).await;
        let reply = world.sink.borrow().accepted()[0].clone();
        assert_eq!(reply.rcpt_to, ["carol@example.test"], "only the parsed address");
        let names = reply.header_names();
        assert!(
            !names.iter().any(|n| n.eq_ignore_ascii_case("bcc") || n.eq_ignore_ascii_case("x-injected")),
            "{names:?}"
        );
        assert_eq!(reply.header("Subject").as_deref(), Some("Re: Update Bcc: eve@evil.test"), "one line");
        assert_eq!(reply.header("In-Reply-To"), None, "an id with a line break is dropped, not flattened");
        assert_eq!(reply.header("References"), None);

        // A delivery whose target smuggles a second recipient never reaches the SMTP server.
        let before = world.sink.borrow().connections;
        world.cloud.enqueue_delivery(
            "email",
            "smuggled",
            json!({"externalChatId": "dave@example.test\r\nRCPT TO:<eve@evil.test>"}),
            json!({"text": "x"}),
        );
        eventually("dead", || delivery_status(&world.cloud, "smuggled") == "dead").await;
        assert_eq!(world.sink.borrow().connections, before, "no MAIL FROM was ever written");
    });
}

#[test]
fn smtp_4xx_is_retried_until_sent_and_5xx_is_dead_lettered() {
    // Real time: the dev Cloud schedules the retry on the wall clock (about a second).
    run(async {
        let mut sink = Sink::default();
        sink.script.push_back((Stage::Mail, "421 4.3.2 try again later"));
        let world = world(sink, &[]).await;
        let target = json!({"externalChatId": "bob@example.test"});
        world.cloud.enqueue_delivery("email", "later", target.clone(), json!({"text": "first"}));
        eventually("sent after 421", || delivery_status(&world.cloud, "later") == "sent").await;
        {
            let sink = world.sink.borrow();
            assert_eq!(sink.transactions.len(), 1, "the 421 ended the first transaction before DATA");
            assert_eq!(sink.accepted().len(), 1);
            assert!(sink.connections >= 2, "a second attempt");
        }

        world.sink.borrow_mut().script.push_back((Stage::Rcpt, "550 5.1.1 user unknown"));
        world.cloud.enqueue_delivery("email", "unknown", target, json!({"text": "second"}));
        eventually("dead after 550", || delivery_status(&world.cloud, "unknown") == "dead").await;
        let record = world.cloud.delivery("email", "unknown").unwrap();
        assert_eq!(record["attemptCount"], 1, "never retried: {record}");
        assert_eq!(world.sink.borrow().accepted().len(), 1);
    });
}

#[test]
fn starttls_is_used_and_verified_against_the_private_ca() {
    run(async {
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email/ca.pem");
        let sink = Sink { tls: Some(smtp_sink::test_tls_config()), ..Sink::default() };
        let world = world(
            sink,
            &[
                ("OPEN_COWORK_GATEWAY_CA_FILE", ca.to_str().unwrap()),
                ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_USERNAME", "agent"),
                ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PASSWORD", "smtp-password-for-tests"),
            ],
        )
        .await;
        world.cloud.enqueue_delivery(
            "email",
            "tls",
            json!({"externalChatId": "bob@example.test"}),
            json!({"text": "sealed"}),
        );
        eventually("sent", || delivery_status(&world.cloud, "tls") == "sent").await;
        let sink = world.sink.borrow();
        let mail = sink.accepted()[0].clone();
        assert!(mail.tls, "the transaction ran after STARTTLS");
        assert_eq!(mail.auth.as_deref(), Some("\0agent\0smtp-password-for-tests"), "AUTH PLAIN, over TLS only");
    });
}

#[test]
fn credentials_are_never_sent_without_tls() {
    run(async {
        // The sink offers no STARTTLS: with a username configured, the send fails permanently
        // before AUTH (and the delivery is dead-lettered) instead of sending the password in clear.
        let world = world(
            Sink::default(),
            &[
                ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_USERNAME", "agent"),
                ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PASSWORD", "smtp-password-for-tests"),
            ],
        )
        .await;
        world.cloud.enqueue_delivery(
            "email",
            "clear",
            json!({"externalChatId": "bob@example.test"}),
            json!({"text": "x"}),
        );
        eventually("dead", || delivery_status(&world.cloud, "clear") == "dead").await;
        assert!(world.sink.borrow().transactions.is_empty());
    });
}

/// Python's `email` package, with the strict default policy, reads each reply without a defect:
/// MIME 1.0, UTF-8 text in a transfer encoding that decodes back to what was sent, and the
/// threading headers of RFC 5322 §3.6.4 (In-Reply-To = the parent's Message-ID, References =
/// the parent's References, else its In-Reply-To, followed by the parent's Message-ID).
#[test]
fn replies_parse_cleanly_and_thread_by_rfc_5322() {
    run(async {
        let world = world(Sink::default(), &[]).await;
        let parent = json!({"messageId": "<p2@example.test>", "from": "erin@example.test", "subject": "Grüße",
            "inReplyTo": "<p1@example.test>", "references": ["<p0@example.test>", "<p1@example.test>"],
            "text": "naïve café ☕ and a long line ".repeat(8)});
        assert_eq!(post(&world.running, &parent, &WITH_SECRET).await, 202);
        eventually("the reply mail", || !world.sink.borrow().accepted().is_empty()).await;
        let reply = world.sink.borrow().accepted()[0].data.clone();
        let script = r#"
import email, email.policy, json, sys
parent = json.loads(sys.argv[1])
message = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
problems = [str(d) for d in message.defects]
for name in ("From", "To", "Subject", "In-Reply-To", "References", "Message-ID"):
    problems += [f"{name}: {d}" for d in message[name].defects]
assert not problems, problems
assert message["MIME-Version"] == "1.0", message["MIME-Version"]
assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"
assert message["Content-Transfer-Encoding"] in ("7bit", "quoted-printable", "base64")
body = message.get_content()
assert "echo: " + parent["text"].strip() in body, body
subject = parent["subject"]
assert str(message["Subject"]) == "Re: " + subject, str(message["Subject"])
assert str(message["In-Reply-To"]) == parent["messageId"]
chain = parent["references"] or [parent["inReplyTo"]]
assert str(message["References"]).split() == chain + [parent["messageId"]], str(message["References"])
print("ok")
"#;
        let mut python = std::process::Command::new("python3")
            .args(["-c", script, &parent.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the parser check");
        std::io::Write::write_all(python.stdin.as_mut().unwrap(), reply.as_bytes()).unwrap();
        drop(python.stdin.take());
        let output = python.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}\n{}\n{reply}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// [`support::eventually_within`] 30 seconds: these end-to-end runs include retry schedules.
async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    support::eventually_within(Duration::from_secs(30), what, condition).await;
}
