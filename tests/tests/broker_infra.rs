//! The broker test infrastructure works: real Mosquitto and NATS brokers on
//! free ports, mTLS with the generated PKI, ACLs, stop / start again on the
//! same port with persistent QoS 1 sessions. See `tests/src/broker.rs`.
//!
//! Needs mosquitto and nats-server (scripts/test-env.sh).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::time::Duration;

use e2e::broker::HOST;
use e2e::{
    hub_acl, mqtt_options, mqtt_tls_options, rustls_client_config, Broker, Certs, Mosquitto,
    MosquittoOpts, NatsMqtt, TempDir, TestClient,
};
use rumqttc::{QoS, SubscribeReasonCode};

const T: Duration = Duration::from_secs(5);

/// Subscribes `sub` to `topic`, publishes from `publ`, checks the payload.
async fn round_trip(sub: &mut TestClient, publ: &mut TestClient, topic: &str, qos: QoS) {
    let ack = sub.subscribe(topic, qos, T).await;
    assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Success(qos)]);
    publ.publish(topic, qos, b"ping", T).await;
    let m = sub.recv(T).await.expect("message");
    assert_eq!(m.topic, topic);
    assert_eq!(&m.payload[..], b"ping");
    assert_eq!(m.qos, qos);
}

async fn connected(opts: rumqttc::MqttOptions) -> TestClient {
    let mut c = TestClient::connect(opts);
    let ack = c.wait_connack(T).await.expect("connected");
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_plain_round_trip() {
    let b = Mosquitto::start(MosquittoOpts::plain());
    assert_eq!(b.url(), format!("mqtt://{HOST}:{}", b.plain_port()));
    let mut sub = connected(mqtt_options("sub", b.port())).await;
    let mut publ = connected(mqtt_options("pub", b.port())).await;
    round_trip(&mut sub, &mut publ, "t/plain", QoS::AtLeastOnce).await;
    round_trip(&mut sub, &mut publ, "t/plain0", QoS::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_mtls() {
    let tmp = TempDir::new("certs");
    let certs = Certs::generate(tmp.path());
    let b = Mosquitto::start(MosquittoOpts::plain().without_plain().with_tls(&certs));
    let port = b.tls_port();
    assert_eq!(b.tls_url(), format!("mqtts://{HOST}:{port}"));

    // hub-1's certificate from the test CA: in, and messages flow.
    let mut hub = connected(mqtt_tls_options(
        "hub-1",
        port,
        certs.rustls_config(Some("hub-1")),
    ))
    .await;
    let mut cloud = connected(mqtt_tls_options(
        "cloud",
        port,
        certs.rustls_config(Some("cloud")),
    ))
    .await;
    round_trip(&mut cloud, &mut hub, "hub/hub-1/events", QoS::AtLeastOnce).await;

    // No client certificate: refused.
    let mut anon = TestClient::connect(mqtt_tls_options("anon", port, certs.rustls_config(None)));
    let err = anon
        .wait_connack(T)
        .await
        .expect_err("refused without a certificate");
    // TLS 1.3: the client's handshake completes; the broker's alert comes
    // when the client reads the CONNACK.
    assert!(err.contains("CertificateRequired"), "{err}");

    // CN hub-1 but signed by the wrong CA: refused.
    let wrong = rustls_client_config(&certs.ca, Some(certs.wrong_ca_client("hub-1")));
    let mut rogue = TestClient::connect(mqtt_tls_options("hub-1-rogue", port, wrong));
    let err = rogue
        .wait_connack(T)
        .await
        .expect_err("refused with a wrong-CA certificate");
    assert!(err.contains("UnknownCA"), "{err}");

    // The client pins the test CA: a broker with a wrong-CA server
    // certificate is refused by the client.
    let mut opts = MosquittoOpts::plain().without_plain().with_tls(&certs);
    if let Some(t) = opts.tls.as_mut() {
        t.server = certs.wrong_server.clone();
    }
    let impostor = Mosquitto::start(opts);
    let mut c = TestClient::connect(mqtt_tls_options(
        "hub-1",
        impostor.tls_port(),
        certs.rustls_config(Some("hub-1")),
    ));
    let err = c
        .wait_connack(T)
        .await
        .expect_err("impostor broker refused");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // TLS 1.2 only also works with rustls.
    let mut opts = MosquittoOpts::plain().without_plain().with_tls(&certs);
    if let Some(t) = opts.tls.as_mut() {
        t.tls_version = Some("tlsv1.2".into());
    }
    let b12 = Mosquitto::start(opts);
    connected(mqtt_tls_options(
        "hub-2",
        b12.tls_port(),
        certs.rustls_config(Some("hub-2")),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_acl_keeps_hubs_apart() {
    let tmp = TempDir::new("certs");
    let certs = Certs::generate(tmp.path());
    let b = Mosquitto::start(MosquittoOpts::plain().with_tls(&certs).acl(hub_acl()));
    let port = b.tls_port();
    let mut cloud = connected(mqtt_tls_options(
        "cloud",
        port,
        certs.rustls_config(Some("cloud")),
    ))
    .await;
    let mut hub1 = connected(mqtt_tls_options(
        "hub-1",
        port,
        certs.rustls_config(Some("hub-1")),
    ))
    .await;
    let ack = cloud.subscribe("hub/+/events", QoS::AtLeastOnce, T).await;
    assert_eq!(
        ack.return_codes,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    // hub-1 may not publish on hub-2's topics: the broker acknowledges and
    // drops the message. Its own topics are fine.
    hub1.publish("hub/hub-2/events", QoS::AtLeastOnce, b"forged", T)
        .await;
    hub1.publish("hub/hub-1/events", QoS::AtLeastOnce, b"own", T)
        .await;
    let m = cloud.recv(T).await.expect("hub-1's own message");
    assert_eq!(
        m.topic, "hub/hub-1/events",
        "hub-1 published on hub-2's topic"
    );
    assert_eq!(&m.payload[..], b"own");
    // Same connection, so the forged one would have come first; make sure.
    assert!(cloud.recv(Duration::from_millis(300)).await.is_err());

    // Nor read them: mosquitto 2.0 grants the subscription (its default ACL
    // check does not look at SUBSCRIBE) but filters on delivery.
    let ack = hub1.subscribe("hub/+/cmd", QoS::AtLeastOnce, T).await;
    assert_eq!(
        ack.return_codes,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    cloud
        .publish("hub/hub-2/cmd", QoS::AtLeastOnce, b"for hub-2", T)
        .await;
    cloud
        .publish("hub/hub-1/cmd", QoS::AtLeastOnce, b"for hub-1", T)
        .await;
    let m = hub1.recv(T).await.expect("hub-1's command");
    assert_eq!(m.topic, "hub/hub-1/cmd", "hub-1 read hub-2's topic");
    assert!(hub1.recv(Duration::from_millis(300)).await.is_err());

    // Anonymous clients on the plain listener get nothing (the ACL has no
    // topic lines for them).
    let mut anon = connected(mqtt_options("anon", b.plain_port())).await;
    anon.subscribe("hub/#", QoS::AtLeastOnce, T).await;
    anon.publish("hub/hub-1/events", QoS::AtLeastOnce, b"anon", T)
        .await;
    cloud
        .publish("hub/hub-1/events", QoS::AtLeastOnce, b"cloud", T)
        .await;
    let m = cloud.recv(T).await.expect("cloud's own message");
    assert_eq!(&m.payload[..], b"cloud", "anonymous client published");
    assert!(anon.recv(Duration::from_millis(300)).await.is_err());
}

/// A persistent QoS 1 session survives `stop` (or, with `crash_after`, a
/// `kill` that long after the last publish) + `start_again` on the same port:
/// messages queued before the stop and published after the restart (while
/// the subscriber is away) are delivered when it comes back.
async fn session_survives_restart(b: &mut dyn Broker, crash_after: Option<Duration>) {
    let port = b.port();
    let mut sub_opts = mqtt_options("persistent-sub", port);
    sub_opts.set_clean_session(false);

    let mut sub = connected(sub_opts.clone()).await;
    sub.subscribe("sync/persist", QoS::AtLeastOnce, T).await;
    sub.disconnect().await;

    let mut publ = connected(mqtt_options("publisher", port)).await;
    publ.publish("sync/persist", QoS::AtLeastOnce, b"before", T)
        .await;

    if let Some(wait) = crash_after {
        tokio::time::sleep(wait).await;
        b.kill();
    } else {
        b.stop();
    }
    assert!(!b.is_running());
    // The publisher notices the broker is gone.
    publ.wait_connack(T).await.expect_err("connection lost");
    b.start_again();
    assert_eq!(b.port(), port);

    // The publisher reconnects by itself, on the same port.
    publ.wait_connected(T).await.expect("publisher reconnected");
    publ.publish("sync/persist", QoS::AtLeastOnce, b"after", T)
        .await;

    let mut sub = TestClient::connect(sub_opts);
    let ack = sub.wait_connack(T).await.expect("subscriber back");
    assert!(ack.session_present, "{} lost the session", b.kind());
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = sub
            .recv(T)
            .await
            .unwrap_or_else(|e| panic!("{}: queued message missing ({e}); got {got:?}", b.kind()));
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    assert_eq!(got, ["before", "after"], "{}", b.kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_restart_keeps_sessions() {
    let mut b = Mosquitto::start(MosquittoOpts::plain().persistence(true));
    session_survives_restart(&mut b, None).await;
    // SIGKILL: mosquitto saves about a second after a change (see the
    // module doc), so give it that.
    let mut b = Mosquitto::start(MosquittoOpts::plain().persistence(true));
    session_survives_restart(&mut b, Some(Duration::from_millis(1500))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mqtt_round_trip() {
    let b = NatsMqtt::start();
    let mut sub = connected(mqtt_options("sub", b.port())).await;
    let mut publ = connected(mqtt_options("pub", b.port())).await;
    round_trip(&mut sub, &mut publ, "t/nats", QoS::AtLeastOnce).await;
    round_trip(&mut sub, &mut publ, "t/nats0", QoS::AtMostOnce).await;

    // Retained messages work too.
    publ.client
        .publish("t/retained", QoS::AtLeastOnce, true, b"kept".to_vec())
        .await
        .expect("queue");
    publ.wait_packet(T, |p| matches!(p, rumqttc::Packet::PubAck(_)).then_some(()))
        .await
        .expect("PUBACK");
    let mut late = connected(mqtt_options("late", b.port())).await;
    late.subscribe("t/retained", QoS::AtLeastOnce, T).await;
    let m = late.recv(T).await.expect("retained message");
    assert!(m.retain);
    assert_eq!(&m.payload[..], b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mqtt_restart_keeps_sessions() {
    let mut b = NatsMqtt::start();
    session_survives_restart(&mut b, None).await;
    // JetStream writes through to its files: SIGKILL right away loses nothing.
    let mut b = NatsMqtt::start();
    session_survives_restart(&mut b, Some(Duration::ZERO)).await;
}
