//! The operations page: a supervisor sees a program's contact rate as a line
//! over 30 days, today's figures against the program's targets, an overdue
//! adverse-event flag as an alert, who is on shift, the program's versions,
//! and takes a table as CSV; a coordinator may not see it.

use chrono::TimeDelta;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::testkit::events::{EMAIL, MOBILE, person};
use touchpoint_platform::testkit::{self, utc};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AdverseEventSuspected, AttemptSent, Channel, Envelope, GetKpisRequest, InboundReceived,
    Language,
};

use crate::browser::{Browser, WAIT};
use crate::support::{CARLA, NewPatient, Rig, SAM};

/// Sunday 31 January 2027, 10:00 in New York.
const NOW: &str = "2027-01-31T15:00:00Z";

fn at(day: i64, hour: i64) -> chrono::DateTime<chrono::Utc> {
    utc("2027-01-01T00:00:00Z") + TimeDelta::days(day - 1) + TimeDelta::hours(hour)
}

/// A text to `case_id` each day from 2 to 31 January at 10:00 New York time,
/// answered on even days; and a possible side effect on the 29th, never
/// reviewed.
fn thirty_days(case_id: &str) -> Vec<(Stream, Envelope)> {
    let mut events = Vec::new();
    for day in 2..=31 {
        let attempt = format!("text-{day}");
        events.push((
            Stream::Attempt,
            new_envelope(
                case_id,
                "dispatch",
                at(day, 15),
                Payload::AttemptSent(AttemptSent {
                    attempt_id: attempt.clone(),
                    channel: Channel::Sms as i32,
                    sent_at: Some(timestamp(at(day, 15))),
                    ..AttemptSent::default()
                }),
                None,
            ),
        ));
        if day % 2 == 0 {
            events.push((
                Stream::Inbound,
                new_envelope(
                    case_id,
                    "routing",
                    at(day, 16),
                    Payload::InboundReceived(InboundReceived {
                        inbound_id: format!("reply-{day}"),
                        channel: Channel::Sms as i32,
                        received_at: Some(timestamp(at(day, 16))),
                        in_reply_to_attempt_id: attempt,
                    }),
                    None,
                ),
            ));
        }
    }
    events.push((
        Stream::Inbound,
        new_envelope(
            case_id,
            "routing",
            at(29, 16),
            Payload::AdverseEventSuspected(AdverseEventSuspected {
                inbound_id: "reply-28".into(),
                received_at: Some(timestamp(at(29, 16))),
                report_due_at: Some(timestamp(at(30, 16))),
                review_task_id: "review-1".into(),
                ..AdverseEventSuspected::default()
            }),
            None,
        ),
    ));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sees_the_contact_rate_over_thirty_days_alerts_and_the_team() {
    let mut rig = Rig::start(NOW, &[SAM, CARLA]).await;
    rig.on_roster(&CARLA).await;
    let case_id = rig
        .open_case(NewPatient {
            key: "dana",
            program: "adherence",
            person: person("Dana", "Whitfield", MOBILE, EMAIL),
            language: Language::En,
            enrolled: "2027-01-01T15:00:00Z",
            channels: &[Channel::Sms],
            coordinator: CARLA.id,
        })
        .await;
    testkit::publish(&rig.hub.prefix, &thirty_days(&case_id)).await;
    // The projection has counted the month once its last entries are in.
    testkit::eventually("the KPI projection to count the month", WAIT, || {
        let mut cases = rig.hub.cases.clone();
        async move {
            let answer = cases
                .get_kpis(GetKpisRequest {
                    from_day: "2027-01-01".into(),
                    ..GetKpisRequest::default()
                })
                .await
                .ok()?
                .into_inner();
            let flags: i64 = answer
                .figures
                .iter()
                .filter(|f| f.figure == "ae_flags")
                .map(|f| f.value)
                .sum();
            (answer.behind == 0 && flags == 1).then_some(())
        }
    })
    .await;

    let browser = Browser::start().await;
    rig.sign_in(&browser, &SAM).await;
    browser.click_on("nav a[href='/operations']").await;
    browser.find("#today").await;
    // The program, SMS, the last 30 days.
    browser
        .goto(&rig.url("/operations?program=adherence&channel=sms&days=30"))
        .await;
    let chart = "#chart-contact-rate";
    browser.find(chart).await;
    assert_eq!(
        browser
            .execute(
                "return document.querySelectorAll(arguments[0] + ' circle').length",
                serde_json::json!([chart]),
            )
            .await,
        serde_json::json!(30),
        "a point for each of the 30 days"
    );
    let points = browser
        .execute(
            "return [...document.querySelectorAll(arguments[0] + ' circle title')].map(t => t.textContent)",
            serde_json::json!([chart]),
        )
        .await;
    assert_eq!(points[0], serde_json::json!("2027-01-02: 100%"));
    assert_eq!(points[1], serde_json::json!("2027-01-03: 0%"));
    // The program's target (35%) is drawn.
    assert!(
        browser
            .find_now(&format!("{chart} line.target"))
            .await
            .is_some()
    );
    // Today (the 31st, odd) nobody answered: below the 35% target.
    let today = browser.text_of("#today tbody tr").await;
    assert!(today.contains("0%") && today.contains("35%"), "{today}");
    assert!(browser.find_now("#today td.misses").await.is_some());
    // The flag raised on the 29th is past its 24 hours.
    let alerts = browser.text_of("#alerts").await;
    assert!(
        alerts.contains("adherence: Possible adverse events past 24 hours without a review: 1"),
        "{alerts}"
    );
    // Carla is on the roster, on shift and available.
    let team = browser.text_of("#team").await;
    assert!(
        team.contains("carla") && team.contains("Available"),
        "{team}"
    );
    // The program's versions: the shipped folder is its first, and newest.
    let version = browser
        .text_of("#versions [data-version='adherence-1']")
        .await;
    assert!(
        version.contains("programs folder") && version.contains("newest"),
        "{version}"
    );
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the operations page"
    );
    let shot = browser.screenshot().await;
    let _ = std::fs::write(std::env::temp_dir().join("desk-operations.png"), shot);

    // Each day's figures as CSV, without patient data.
    let (status, kind, body) = browser
        .download("/operations.csv?table=daily&program=adherence&channel=sms&days=30")
        .await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 31, "a header and 30 days");
    assert!(lines[0].starts_with("day,contact_rate,"));
    assert!(lines[1].starts_with("2027-01-02,1.0000,"), "{}", lines[1]);
    for secret in ["Dana", "Whitfield", MOBILE, EMAIL] {
        assert!(!body.contains(secret));
    }

    // Moving cases to the newest version starts with a preview; every case
    // already runs on it.
    browser
        .goto(&rig.url("/operations/migrate?program=adherence"))
        .await;
    assert!(
        browser
            .text_of("#migration")
            .await
            .contains("Every case already runs on the newest version."),
    );
    assert_eq!(
        browser
            .fetch_status("GET", "/operations/migrate?program=refill-reminder", &[])
            .await,
        404
    );

    // A coordinator may not see the page, nor ask for another program.
    assert_eq!(
        browser
            .fetch_status("GET", "/operations?program=refill-reminder", &[])
            .await,
        400
    );
    let carla = Browser::start().await;
    rig.sign_in(&carla, &CARLA).await;
    assert!(carla.find_now("nav a[href='/operations']").await.is_none());
    assert_eq!(carla.fetch_status("GET", "/operations", &[]).await, 403);
    assert_eq!(carla.fetch_status("GET", "/operations.csv", &[]).await, 403);
    assert_eq!(
        carla
            .fetch_status("GET", "/operations/migrate?program=adherence", &[])
            .await,
        403
    );
}
