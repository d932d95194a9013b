//! `/metrics`: the hub's status in the Prometheus (OpenMetrics) text format.
//!
//! Rendered from the newest [`HubStatus`] snapshot at each scrape, with the
//! `prometheus-client` crate doing the encoding (escaping, `# TYPE` lines,
//! `_total` suffixes, the `# EOF` trailer). Labels carry door ids, reader
//! names and bus names; never a credential.

use std::fmt::Write as _;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::status::HubStatus;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, LabelValue)>;

/// A label value escaped as the text format requires (`\\`, `\"`,
/// `\n`): `prometheus-client` writes values as they are, and a door id
/// with a quote would otherwise break the whole scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LabelValue(String);

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let metric: Gauge = Gauge::default();
    metric.set(value);
    registry.register(name, help, metric);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let metric: Counter = Counter::default();
    metric.inc_by(value);
    registry.register(name, help, metric);
}

fn family(registry: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, i64)>) {
    let metric = Family::<Labels, Gauge>::default();
    for (labels, value) in rows {
        metric.get_or_create(&labels).set(value);
    }
    registry.register(name, help, metric);
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn label(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), LabelValue((*v).to_owned())))
        .collect()
}

/// The metrics text for one snapshot.
pub fn render(status: &HubStatus) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("hub");
    let s = &status.system;
    family(
        &mut registry,
        "build_info",
        "The hub's version and site (value 1)",
        vec![(label(&[("version", &s.version), ("site", &s.site)]), 1)],
    );
    gauge(
        &mut registry,
        "uptime_seconds",
        "Seconds since the hub started",
        clamp(s.uptime_s),
    );
    gauge(
        &mut registry,
        "memory_rss_bytes",
        "Resident memory of the hub process",
        clamp(s.memory_rss_bytes),
    );
    gauge(
        &mut registry,
        "disk_free_bytes",
        "Free space on the store's file system",
        clamp(s.disk_free_bytes),
    );
    gauge(
        &mut registry,
        "store_bytes",
        "Size of the store on disk",
        clamp(s.store_bytes),
    );

    let doors = &status.doors;
    family(
        &mut registry,
        "door_locked",
        "1 when the door's strike is locked",
        doors
            .iter()
            .map(|d| (label(&[("door", &d.id)]), i64::from(d.locked)))
            .collect(),
    );
    family(
        &mut registry,
        "door_open",
        "1 when the door position switch says open",
        doors
            .iter()
            .filter_map(|d| {
                d.open
                    .map(|open| (label(&[("door", &d.id)]), i64::from(open)))
            })
            .collect(),
    );
    family(
        &mut registry,
        "door_alarm",
        "1 while a door alarm is active",
        doors
            .iter()
            .flat_map(|d| {
                ["forced_open", "held_open"].into_iter().map(|alarm| {
                    let on = d.alarms.iter().any(|a| a == alarm);
                    (label(&[("door", &d.id), ("alarm", alarm)]), i64::from(on))
                })
            })
            .collect(),
    );
    let reader_rows = |f: fn(&crate::status::ReaderStatus) -> bool| {
        status
            .readers
            .iter()
            .map(|r| {
                let address = r.address.to_string();
                (
                    label(&[("reader", &r.name), ("bus", &r.bus), ("address", &address)]),
                    i64::from(f(r)),
                )
            })
            .collect::<Vec<_>>()
    };
    family(
        &mut registry,
        "reader_online",
        "1 when the reader answers",
        reader_rows(|r| r.online),
    );
    family(
        &mut registry,
        "reader_secure",
        "1 when the reader's secure channel is up",
        reader_rows(|r| r.secure),
    );
    family(
        &mut registry,
        "reader_tamper",
        "1 while the reader reports tamper",
        reader_rows(|r| r.tamper),
    );

    let sync = &status.sync;
    gauge(
        &mut registry,
        "sync_connected",
        "1 when connected to the MQTT broker",
        i64::from(sync.connected),
    );
    gauge(
        &mut registry,
        "sync_revision",
        "Revision of the enforced data set (-1: none)",
        sync.revision.map_or(-1, clamp),
    );
    gauge(
        &mut registry,
        "outbox_depth",
        "Events not yet acknowledged by the cloud",
        clamp(sync.outbox_depth),
    );
    gauge(
        &mut registry,
        "sync_last_contact_seconds",
        "Unix time of the last packet from the MQTT broker (0: never)",
        sync.last_contact.map_or(0, |t| t.as_second()),
    );
    gauge(
        &mut registry,
        "outbox_alarm",
        "1 while the outbox is at its alarm level (outbox_high or outbox_full)",
        i64::from(sync.outbox_alarm.is_some()),
    );

    let c = &status.cache;
    family(
        &mut registry,
        "cache_records",
        "Records in the local cache, by kind",
        [
            ("users", c.users),
            ("credentials", c.credentials),
            ("accesses", c.accesses),
            ("access_codes", c.access_codes),
            ("doors", c.doors),
        ]
        .into_iter()
        .map(|(kind, n)| (label(&[("kind", kind)]), clamp(n)))
        .collect(),
    );

    let n = &status.counters;
    let decisions = Family::<Labels, Counter>::default();
    decisions
        .get_or_create(&label(&[("result", "granted")]))
        .inc_by(n.granted);
    decisions
        .get_or_create(&label(&[("result", "denied")]))
        .inc_by(n.denied);
    registry.register("decisions", "Access decisions, by result", decisions);
    counter(&mut registry, "door_alarms", "Door alarms raised", n.alarms);
    counter(
        &mut registry,
        "osdp_packets_sent",
        "OSDP packets sent, retries included",
        n.osdp_sent,
    );
    counter(
        &mut registry,
        "osdp_timeouts",
        "OSDP requests that got no reply in time",
        n.osdp_timeouts,
    );
    counter(
        &mut registry,
        "web_actions",
        "Technician actions from the web page",
        n.web_actions,
    );
    counter(
        &mut registry,
        "events_dropped",
        "Events that could not be stored (outbox full or store failure)",
        n.events_dropped,
    );

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{DoorStatus, ReaderStatus};

    fn sample_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn status_becomes_series() {
        let mut status = HubStatus::default();
        status.system.version = "1.2.3".into();
        status.system.site = "hq".into();
        status.system.uptime_s = 42;
        status.doors.push(DoorStatus {
            id: "front".into(),
            locked: true,
            open: Some(false),
            alarms: vec!["held_open".into()],
            ..DoorStatus::default()
        });
        status.readers.push(ReaderStatus {
            name: "front-in".into(),
            bus: "rs485-0".into(),
            address: 1,
            online: true,
            secure: true,
            ..ReaderStatus::default()
        });
        status.sync.outbox_depth = 17;
        status.sync.last_contact = Some(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        status.sync.outbox_alarm = Some("outbox_high".into());
        status.counters.events_dropped = 3;
        status.cache.credentials = 1_000_000;
        status.counters.granted = 5;
        status.counters.denied = 2;

        let text = render(&status).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(sample_value(&text, "hub_uptime_seconds"), Some(42.0));
        assert_eq!(
            sample_value(&text, r#"hub_door_locked{door="front"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample_value(&text, r#"hub_door_open{door="front"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample_value(&text, r#"hub_door_alarm{door="front",alarm="held_open"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample_value(&text, r#"hub_door_alarm{door="front",alarm="forced_open"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample_value(
                &text,
                r#"hub_reader_secure{reader="front-in",bus="rs485-0",address="1"}"#
            ),
            Some(1.0)
        );
        assert_eq!(sample_value(&text, "hub_outbox_depth"), Some(17.0));
        assert_eq!(
            sample_value(&text, "hub_sync_last_contact_seconds"),
            Some(1_700_000_000.0)
        );
        assert_eq!(sample_value(&text, "hub_outbox_alarm"), Some(1.0));
        assert_eq!(sample_value(&text, "hub_events_dropped_total"), Some(3.0));
        assert_eq!(sample_value(&text, "hub_sync_revision"), Some(-1.0));
        assert_eq!(
            sample_value(&text, r#"hub_cache_records{kind="credentials"}"#),
            Some(1_000_000.0)
        );
        assert_eq!(
            sample_value(&text, r#"hub_decisions_total{result="granted"}"#),
            Some(5.0)
        );
        assert_eq!(
            sample_value(&text, r#"hub_decisions_total{result="denied"}"#),
            Some(2.0)
        );
        assert!(text.contains("# TYPE hub_decisions counter"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut status = HubStatus::default();
        status.doors.push(DoorStatus {
            id: "a\"b\\c\nd".into(),
            ..DoorStatus::default()
        });
        let text = render(&status).unwrap();
        assert!(
            text.contains(r#"hub_door_locked{door="a\"b\\c\nd"} 0"#),
            "{text}"
        );
    }
}
