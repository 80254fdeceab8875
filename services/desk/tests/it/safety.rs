//! Pharmacovigilance: a possible adverse event past its 24 hours is reported
//! through the form (day zero shown, not typed) and leaves the overdue list;
//! another is decided not to be one; the month's reconciliation shows both
//! with the hours they took; the report downloads as E2B(R3) XML. A
//! coordinator may not open any of it.

use chrono::TimeDelta;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::testkit::events::{EMAIL, MOBILE, person};
use touchpoint_platform::testkit::{self, utc};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AdverseEventSuspected, Channel, GetKpisRequest, GetTimelineRequest, Language,
    ListAdverseEventsRequest,
};

use crate::browser::{Browser, WAIT};
use crate::support::{Account, CARLA, NewPatient, Rig};

/// Wednesday 20 January 2027, 10:00 in New York.
const NOW: &str = "2027-01-20T15:00:00Z";

/// Paula: pharmacovigilance for the adherence program.
const PAULA: Account = Account {
    id: "paula",
    name: "Paula Stein",
    roles: &["pharmacovigilance"],
    programs: &["adherence"],
    locale: "en-US",
};

/// A flag on `case_id` first received `hours_ago` before now.
fn flag(case_id: &str, key: &str, hours_ago: i64) -> (Stream, touchpoint_proto::v1::Envelope) {
    let received = utc(NOW) - TimeDelta::hours(hours_ago);
    (
        Stream::Inbound,
        new_envelope(
            case_id,
            "routing",
            received,
            Payload::AdverseEventSuspected(AdverseEventSuspected {
                inbound_id: format!("message-{key}"),
                matched_terms: vec!["rash".into()],
                received_at: Some(timestamp(received)),
                report_due_at: Some(timestamp(received + TimeDelta::hours(24))),
                review_task_id: key.into(),
            }),
            None,
        ),
    )
}

/// How many flags the projection holds open.
async fn open_flags(rig: &Rig) -> Option<usize> {
    let answer = rig
        .hub
        .cases
        .clone()
        .list_adverse_events(ListAdverseEventsRequest {
            open_only: true,
            ..ListAdverseEventsRequest::default()
        })
        .await
        .ok()?
        .into_inner();
    Some(answer.flags.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_adverse_event_is_reported_through_the_form_and_reconciled_with_its_hours() {
    let mut rig = Rig::start(NOW, &[PAULA, CARLA]).await;
    rig.on_roster(&CARLA).await;
    let case_id = rig
        .open_case(NewPatient {
            key: "dana",
            program: "adherence",
            person: person("Dana", "Whitfield", MOBILE, EMAIL),
            language: Language::En,
            enrolled: "2027-01-04T15:00:00Z",
            channels: &[Channel::Sms],
            coordinator: CARLA.id,
        })
        .await;
    // One flag 30 hours old (overdue), one 2 hours old.
    testkit::publish(
        &rig.hub.prefix,
        &[
            flag(&case_id, "review-late", 30),
            flag(&case_id, "review-new", 2),
        ],
    )
    .await;
    testkit::eventually("the projection to hold both flags", WAIT, || async {
        (open_flags(&rig).await == Some(2)).then_some(())
    })
    .await;

    let browser = Browser::start().await;
    rig.sign_in(&browser, &PAULA).await;
    browser.click_on("nav a[href='/safety']").await;
    let overdue = browser.text_of("#overdue").await;
    assert!(
        overdue.contains(&case_id) && overdue.contains("30.0 h"),
        "{overdue}"
    );
    assert!(browser.text_of("#due").await.contains(&case_id));
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the list of possible adverse events"
    );

    // The form: day zero is shown, and nothing on the form can change it.
    browser.click_on("#overdue a").await;
    let aware = browser.text_of("#aware").await;
    assert!(aware.contains("2027-01-19 04:00 EST"), "{aware}");
    assert!(browser.find_now("input[name*=aware]").await.is_none());
    assert_eq!(
        browser
            .execute(
                "return document.getElementById('patient_initials').value",
                serde_json::json!([]),
            )
            .await,
        serde_json::json!("D. W.")
    );
    browser.type_into("#reporter_name", "Dana Whitfield").await;
    browser
        .type_into(
            "#event_description",
            "A rash on both arms since the second dose",
        )
        .await;
    browser.click_on("#serious_yes").await;
    browser.click_on("#criterion_hospitalisation").await;
    browser
        .type_into("#safety_reference", "SDB-2027-0042")
        .await;
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the report form"
    );
    let shot = browser.screenshot().await;
    let _ = std::fs::write(std::env::temp_dir().join("desk-ae-form.png"), shot);
    browser.click_on("#submit-report").await;
    browser
        .wait_for_text("The report is recorded and the review task is done.")
        .await;

    // Recorded on the case, day zero from the flag, by Paula.
    let reported = rig
        .hub
        .cases
        .clone()
        .get_timeline(GetTimelineRequest {
            case_id: case_id.clone(),
            kinds: vec!["AdverseEventReported".into()],
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .entries
        .into_iter()
        .find_map(|e| match e.event?.payload? {
            Payload::AdverseEventReported(r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no AdverseEventReported on the case"));
    assert_eq!(reported.decided_by, "paula");
    assert_eq!(
        reported.aware_at.map(|t| t.seconds),
        Some((utc(NOW) - TimeDelta::hours(30)).timestamp())
    );
    let report = reported.report.unwrap_or_default();
    assert_eq!(report.seriousness_criteria, vec!["hospitalisation"]);
    assert_eq!(report.reporter_qualification, "consumer");

    // It leaves the overdue list (once the projection has it), and the
    // supervisors' open work.
    testkit::eventually("the flag to leave the overdue list", WAIT, || async {
        browser.goto(&rig.url("/safety")).await;
        let overdue = browser.text_of("#overdue").await;
        (!overdue.contains(&case_id)).then_some(())
    })
    .await;
    let kpis = rig
        .hub
        .cases
        .clone()
        .get_kpis(GetKpisRequest::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let open_ae: u64 = kpis
        .open_work
        .iter()
        .filter(|w| w.kind == "adverse_event")
        .map(|w| w.overdue)
        .sum();
    assert_eq!(open_ae, 0, "{:?}", kpis.open_work);

    // The new one is not an adverse event.
    browser.click_on("#due a").await;
    browser
        .type_into("#reason", "The patient described a planned dose change")
        .await;
    browser.click_on("#submit-not-ae").await;
    browser
        .wait_for_text("The decision is recorded and the review task is done.")
        .await;
    testkit::eventually("both flags decided", WAIT, || async {
        (open_flags(&rig).await == Some(0)).then_some(())
    })
    .await;

    // The month's reconciliation: each flag, its decision and its hours.
    browser
        .click_on("nav a[href='/safety/reconciliation']")
        .await;
    browser
        .goto(&rig.url("/safety/reconciliation?month=2027-01"))
        .await;
    let rows = browser
        .execute(
            "return [...document.querySelectorAll('#reconciliation tbody tr')].map(r => r.innerText)",
            serde_json::json!([]),
        )
        .await;
    let rows: Vec<String> = rows
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].contains("Reported")
            && rows[0].contains("SDB-2027-0042")
            && rows[0].contains("30.0"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].contains("Not an adverse event") && rows[1].contains("2.0"),
        "{}",
        rows[1]
    );
    let summary = browser.text_of("#summary").await;
    assert!(
        summary.contains("2 flags") && summary.contains("1 decided within 24 hours"),
        "{summary}"
    );
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the reconciliation"
    );
    let shot = browser.screenshot().await;
    let _ = std::fs::write(std::env::temp_dir().join("desk-reconciliation.png"), shot);

    // The report as E2B(R3) XML; the reconciliation as CSV without patient data.
    let link = browser
        .execute(
            "return document.querySelector('#reconciliation a[download]').getAttribute('href')",
            serde_json::json!([]),
        )
        .await;
    let (status, kind, body) = browser.download(link.as_str().unwrap_or_default()).await;
    assert_eq!(
        (status, kind.as_str()),
        (200, "application/xml; charset=utf-8")
    );
    assert!(body.contains("PORR_IN049016UV"), "{body}");
    assert!(body.contains(r#"<id extension="SDB-2027-0042""#), "{body}");
    assert!(body.contains("<originalText>A rash on both arms"), "{body}");
    let (_, _, csv) = browser
        .download("/safety/reconciliation.csv?month=2027-01")
        .await;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    for secret in ["Dana", "Whitfield", MOBILE, EMAIL, "rash"] {
        assert!(!csv.contains(secret), "{secret} in the CSV");
    }

    // A coordinator sees none of it.
    let carla = Browser::start().await;
    rig.sign_in(&carla, &CARLA).await;
    assert!(carla.find_now("nav a[href='/safety']").await.is_none());
    for path in [
        "/safety".to_owned(),
        format!("/safety/{case_id}/review-late"),
        format!("/safety/{case_id}/review-late/e2b.xml"),
        "/safety/reconciliation".to_owned(),
    ] {
        assert_eq!(carla.fetch_status("GET", &path, &[]).await, 403, "{path}");
    }
}
