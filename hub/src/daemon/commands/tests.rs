use super::*;
use crate::access::{self, fixture};
use crate::status::{DoorStatus, HubStatus, ReaderStatus};

fn targets() -> Targets {
    Targets {
        doors: vec!["front".into()],
        readers: vec!["front-in".into()],
    }
}

fn view() -> View {
    View::build(fixture::data()).unwrap()
}

fn cmd(action: pb::command::Action) -> pb::Command {
    pb::Command {
        correlation_id: "c-1".into(),
        action: Some(action),
    }
}

fn unlock(door: &str, ms: u32) -> pb::Command {
    cmd(pb::command::Action::MomentaryUnlock(pb::MomentaryUnlock {
        door: door.into(),
        duration_ms: ms,
    }))
}

fn output(reader: &str, led: pb::LedColor, beeps: u32, text: &str) -> pb::Command {
    cmd(pb::command::Action::ReaderOutput(pb::ReaderOutput {
        reader: reader.into(),
        led: led as i32,
        beeps,
        text: text.into(),
        duration_ms: 0,
    }))
}

fn code(r: Result<Action, pb::CommandResult>) -> pb::ResultCode {
    r.map(|_| pb::ResultCode::Ok).unwrap_or_else(|r| r.code())
}

#[test]
fn commands_parse_into_site_actions() {
    let (t, v) = (targets(), view());
    assert_eq!(
        parse(&unlock("front", 2500), &t, &v).unwrap(),
        Action::CloudUnlock {
            door: "front".into(),
            pulse: Some(Duration::from_millis(2500))
        }
    );
    assert_eq!(
        parse(&unlock("front", 0), &t, &v).unwrap(),
        Action::CloudUnlock {
            door: "front".into(),
            pulse: None
        }
    );
    let site = cmd(pb::command::Action::Lockdown(pb::Lockdown {
        door: String::new(),
        on: true,
    }));
    assert_eq!(
        parse(&site, &t, &v).unwrap(),
        Action::Lockdown {
            door: None,
            on: true
        }
    );
    // A door of the data set not wired here may be locked down (the HTTP
    // check decides there).
    let back = cmd(pb::command::Action::Lockdown(pb::Lockdown {
        door: "back".into(),
        on: true,
    }));
    assert_eq!(
        parse(&back, &t, &v).unwrap(),
        Action::Lockdown {
            door: Some("back".into()),
            on: true
        }
    );
    let mode = cmd(pb::command::Action::DoorMode(pb::DoorMode {
        door: "front".into(),
        mode: pb::DoorModeKind::Unlocked as i32,
    }));
    assert_eq!(
        parse(&mode, &t, &v).unwrap(),
        Action::DoorMode {
            door: "front".into(),
            mode: DoorModeCommand::Unlocked
        }
    );
    let Action::ReaderOutput(o) =
        parse(&output("front-in", pb::LedColor::Red, 2, "Hello"), &t, &v).unwrap()
    else {
        panic!("not a reader output");
    };
    assert_eq!(o.led, Some(LedColor::Red));
    assert_eq!((o.beeps, o.text.as_deref()), (2, Some("Hello")));
    assert_eq!(o.duration, DEFAULT_OUTPUT_TIME);
}

#[test]
fn unknown_targets_and_bad_fields_are_refused_with_their_code() {
    use pb::ResultCode as R;
    let (t, v) = (targets(), view());
    assert_eq!(code(parse(&unlock("garage", 0), &t, &v)), R::UnknownTarget);
    // "back" is in the data set but not wired here: nothing to release.
    assert_eq!(code(parse(&unlock("back", 0), &t, &v)), R::UnknownTarget);
    assert_eq!(code(parse(&unlock("", 0), &t, &v)), R::Invalid);
    assert_eq!(code(parse(&unlock("front", 60_001), &t, &v)), R::Invalid);
    let nowhere = cmd(pb::command::Action::Lockdown(pb::Lockdown {
        door: "nowhere".into(),
        on: true,
    }));
    assert_eq!(code(parse(&nowhere, &t, &v)), R::UnknownTarget);
    let unspecified = cmd(pb::command::Action::DoorMode(pb::DoorMode {
        door: "front".into(),
        mode: 0,
    }));
    assert_eq!(code(parse(&unspecified, &t, &v)), R::Invalid);
    let unknown_mode = cmd(pb::command::Action::DoorMode(pb::DoorMode {
        door: "front".into(),
        mode: 99,
    }));
    assert_eq!(code(parse(&unknown_mode, &t, &v)), R::Invalid);
    let led = pb::LedColor::Green;
    assert_eq!(
        code(parse(&output("back-in", led, 0, ""), &t, &v)),
        R::UnknownTarget
    );
    assert_eq!(
        code(parse(&output("front-in", led, 11, ""), &t, &v)),
        R::Invalid
    );
    assert_eq!(
        code(parse(&output("front-in", led, 0, &"x".repeat(33)), &t, &v)),
        R::Invalid
    );
    assert_eq!(
        code(parse(&output("front-in", led, 0, "bell\u{7}"), &t, &v)),
        R::Invalid
    );
    assert_eq!(
        code(parse(
            &output("front-in", pb::LedColor::Unspecified, 0, ""),
            &t,
            &v
        )),
        R::Invalid,
        "nothing to show"
    );
    let mut bad_colour = output("front-in", led, 0, "");
    if let Some(pb::command::Action::ReaderOutput(o)) = &mut bad_colour.action {
        o.led = 42;
    }
    assert_eq!(code(parse(&bad_colour, &t, &v)), R::Invalid);
    let none = pb::Command {
        correlation_id: "c".into(),
        action: None,
    };
    assert_eq!(code(parse(&none, &t, &v)), R::Invalid);
}

#[test]
fn command_lockdowns_are_set_in_place_over_the_data_set() {
    let view = view();
    let now = fixture::now();
    let door = Overrides {
        door_lockdown: ["front".to_owned()].into(),
        ..Overrides::default()
    };
    door.apply(&view);
    assert_eq!(
        access::door_mode(&view, "front", now),
        Some(access::DoorMode::Lockdown)
    );
    assert_ne!(
        access::door_mode(&view, "back", now),
        Some(access::DoorMode::Lockdown)
    );
    let site = Overrides {
        site_lockdown: true,
        ..Overrides::default()
    };
    site.apply(&view);
    assert_eq!(
        access::door_mode(&view, "back", now),
        Some(access::DoorMode::Lockdown)
    );
    // The data set's own flags are untouched: lifting the command's
    // lockdown gives the data set's modes back.
    assert!(!view.data().site.lockdown);
    assert!(!view.data().doors.iter().any(|d| d.lockdown));
    Overrides::default().apply(&view);
    for door in ["front", "back"] {
        assert_ne!(
            access::door_mode(&view, door, now),
            Some(access::DoorMode::Lockdown),
            "{door}"
        );
    }
}

#[test]
fn a_door_lockdown_on_the_shared_view_from_the_store_leaves_the_other_doors_alone() {
    // A view loaded from the store keeps no user or credential records: the
    // lockdown must be set on that view, not rebuilt from its records.
    let dir = tempfile::tempdir().unwrap();
    let (store, _) =
        crate::store::Store::open(crate::store::StoreConfig::new(dir.path().join("s"))).unwrap();
    crate::site_data::save_snapshot(&store, &fixture::data(), 1).unwrap();
    let (base, _) = crate::site_data::load_view(&store).unwrap();
    assert!(base.data().users.is_empty(), "a compact view");
    fn ann(door: &str) -> access::Request<'_> {
        access::Request::card(
            door,
            access::Direction::In,
            access::CardNumber::new(Some(12), 34567),
        )
    }
    let now = fixture::now();
    let shared = Arc::new(base);
    let other_holder = Arc::clone(&shared);
    assert!(access::decide(&ann("front"), &shared, now).granted);
    let back = Overrides {
        door_lockdown: ["back".to_owned()].into(),
        ..Overrides::default()
    };
    back.apply(&shared);
    assert!(
        access::decide(&ann("front"), &shared, now).granted,
        "other doors as before"
    );
    let front = Overrides {
        door_lockdown: ["front".to_owned()].into(),
        ..Overrides::default()
    };
    front.apply(&shared);
    // Every holder of the shared view sees it at once (one view, no copy).
    let d = access::decide(&ann("front"), &other_holder, now);
    assert!(!d.granted);
    assert_eq!(d.reason, access::Reason::DoorLockdown);
}

#[test]
fn overrides_survive_a_restart_and_a_damaged_file_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Overrides::load(dir.path()), Overrides::default());
    let o = Overrides {
        site_lockdown: true,
        door_lockdown: ["front".to_owned()].into(),
        held_unlocked: ["lobby".to_owned()].into(),
    };
    o.save(dir.path()).unwrap();
    assert_eq!(Overrides::load(dir.path()), o);
    std::fs::write(dir.path().join(OVERRIDES_FILE), "{not json").unwrap();
    assert_eq!(Overrides::load(dir.path()), Overrides::default());
    assert!(dir.path().join("commands.json.bad").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_hands_commands_to_the_site_task_and_answers_its_outcome() {
    // The hook runs on a runtime worker, as in the sync task.
    let (tx2, mut rx2) = mpsc::channel::<ActionRequest>(4);
    let shared: crate::check_api::SharedView = Arc::new(arc_swap::ArcSwap::from_pointee(view()));
    let mut hook = command_hook(tx2, targets(), shared);
    let responder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(r) = rx2.recv().await {
            let ok = matches!(r.action, Action::CloudUnlock { .. });
            seen.push((r.action.name(), r.by.clone()));
            let _ = r.reply.send(crate::web::ActionOutcome {
                ok,
                message: if ok { "released" } else { "reader offline" }.into(),
            });
        }
        seen
    });
    let results = tokio::spawn(async move {
        let ok = hook(&unlock("front", 0));
        let failed = hook(&output("front-in", pb::LedColor::Red, 1, ""));
        let unknown = hook(&unlock("garage", 0));
        (ok, failed, unknown)
    })
    .await
    .unwrap();
    let (ok, failed, unknown) = results;
    assert_eq!(
        (ok.code(), ok.message.as_str()),
        (pb::ResultCode::Ok, "released")
    );
    assert_eq!(failed.code(), pb::ResultCode::Failed);
    assert_eq!(failed.message, "reader offline");
    assert_eq!(unknown.code(), pb::ResultCode::UnknownTarget);
    let seen = responder.await.unwrap();
    assert_eq!(
        seen,
        vec![
            ("unlock", "cloud (correlation id \"c-1\")".to_owned()),
            ("reader_output", "cloud (correlation id \"c-1\")".to_owned()),
        ],
        "the unknown door never reached the site"
    );
}

#[test]
fn health_shows_readers_doors_and_alarms_from_the_status() {
    let status = HubStatus {
        doors: vec![DoorStatus {
            id: "front".into(),
            name: "Front".into(),
            mode: "lockdown".into(),
            locked: true,
            open: Some(true),
            alarms: vec!["forced_open".into()],
        }],
        readers: vec![ReaderStatus {
            name: "front-in".into(),
            online: false,
            secure: false,
            ..ReaderStatus::default()
        }],
        ..HubStatus::default()
    };
    let mut h = pb::Health::default();
    fill_health(&mut h, &status, vec!["outbox_high".into()]);
    assert_eq!(
        h.doors,
        vec![pb::DoorHealth {
            id: "front".into(),
            open: true,
            unlocked: false,
            lockdown: true
        }]
    );
    assert_eq!(
        h.readers,
        vec![pb::ReaderHealth {
            id: "front-in".into(),
            online: false,
            secure_channel: false
        }]
    );
    assert_eq!(
        h.alarms,
        vec![
            "forced_open:front",
            "reader_offline:front-in",
            "outbox_high"
        ]
    );
}

#[test]
fn outbox_alarms_are_raised_once_per_crossing_and_cleared_when_drained() {
    use OutboxLevel as L;
    let mut a = OutboxAlarm::default();
    assert!(a.update(L::Normal).is_empty());
    assert_eq!(a.update(L::High), vec![(OUTBOX_HIGH, true)]);
    assert!(a.update(L::High).is_empty(), "once per crossing");
    assert!(a.update(L::OverLimit).is_empty());
    assert_eq!(a.update(L::Full), vec![(OUTBOX_FULL, true)]);
    assert_eq!(a.active(), Some(OUTBOX_FULL));
    assert_eq!(outbox_alarms(L::Full), vec![OUTBOX_HIGH, OUTBOX_FULL]);
    assert_eq!(a.update(L::High), vec![(OUTBOX_FULL, false)]);
    assert_eq!(a.update(L::Normal), vec![(OUTBOX_HIGH, false)]);
    assert_eq!(a.active(), None);
    assert!(outbox_alarms(L::Normal).is_empty());
    // Straight from normal to full and back: both edges, both ways.
    assert_eq!(
        a.update(L::Full),
        vec![(OUTBOX_HIGH, true), (OUTBOX_FULL, true)]
    );
    assert_eq!(
        a.update(L::Normal),
        vec![(OUTBOX_HIGH, false), (OUTBOX_FULL, false)]
    );
}
