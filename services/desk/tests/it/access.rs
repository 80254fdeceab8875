//! Who may see what: cases only of one's programs, contact details only on a
//! logged reveal, changes only with the form's CSRF token, and no patient
//! data in the desk's log.

use touchpoint_platform::testkit::events::{EMAIL, MOBILE, person};
use touchpoint_proto::v1::{Channel, Language};

use crate::browser::Browser;
use crate::support::{CARLA, CORA, NewPatient, OLU, Rig};

/// A Tuesday, 10:00 in New York.
const NOW: &str = "2027-01-05T15:00:00Z";

async fn adherence_case(rig: &mut Rig) -> String {
    rig.open_case(NewPatient {
        key: "dana",
        program: "adherence",
        person: person("Dana", "Whitfield", MOBILE, EMAIL),
        language: Language::En,
        enrolled: "2027-01-05T14:00:00Z",
        channels: &[Channel::Sms],
        coordinator: CARLA.id,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_the_program_finds_its_cases_neither_by_url_nor_by_search() {
    let mut rig = Rig::start(NOW, &[OLU]).await;
    rig.on_roster(&OLU).await;
    let case_id = adherence_case(&mut rig).await;
    let browser = Browser::start().await;
    rig.sign_in(&browser, &OLU).await;

    // Without TOUCHPOINT_DESK_DEV_LOGIN there is no development sign-in.
    assert_eq!(
        browser
            .fetch_status(
                "POST",
                "/signin/dev",
                &[
                    ("user_id", "mallory"),
                    ("roles", "compliance"),
                    ("programs", "adherence")
                ]
            )
            .await,
        404
    );

    assert_eq!(
        browser
            .fetch_status("GET", &format!("/cases/{case_id}"), &[])
            .await,
        404
    );
    browser.goto(&rig.url(&format!("/cases/{case_id}"))).await;
    browser
        .wait_for_text("There is nothing here that you may see.")
        .await;
    assert!(!browser.source().await.contains("D. W."));
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the error page"
    );

    for query in [case_id.as_str(), MOBILE, EMAIL] {
        browser.goto(&rig.url("/search")).await;
        browser.type_into("#q", query).await;
        browser.click_on("form[role=search] button").await;
        browser.find("#no-results").await;
        assert!(
            !browser
                .source()
                .await
                .contains(&format!("/cases/{case_id}")),
            "searching by {query} finds nothing"
        );
    }
    assert!(
        !browser.current_url().await.contains("2125550142"),
        "a search keeps the number out of the URL"
    );
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the search page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_details_show_only_on_a_reveal_that_compliance_then_reads_in_the_access_log() {
    let mut rig = Rig::start(NOW, &[CARLA, CORA]).await;
    rig.on_roster(&CARLA).await;
    let case_id = adherence_case(&mut rig).await;
    let browser = Browser::start().await;
    browser.goto(&rig.url("/signin")).await;
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the sign-in page"
    );
    rig.sign_in(&browser, &CARLA).await;

    browser.goto(&rig.url(&format!("/cases/{case_id}"))).await;
    browser.find("#timeline").await;
    let masked = browser.source().await;
    for full in [MOBILE, "2125550142", EMAIL, "Whitfield"] {
        assert!(
            !masked.contains(full),
            "the case page without a reveal shows {full}"
        );
    }
    assert!(masked.contains("•••• 0142"), "the masked number");

    // A change without the form's CSRF token changes nothing.
    let forged = browser
        .fetch_status(
            "POST",
            &format!("/cases/{case_id}/notes"),
            &[("text", "forged note")],
        )
        .await;
    assert_eq!(forged, 403);
    let wrong = browser
        .fetch_status(
            "POST",
            &format!("/cases/{case_id}/notes"),
            &[("text", "forged note"), ("csrf", "guessed")],
        )
        .await;
    assert_eq!(wrong, 403);

    browser.click_on("#reveal").await;
    browser.wait_for_text(MOBILE).await;
    assert!(browser.source().await.contains(EMAIL));

    browser.goto(&rig.url(&format!("/cases/{case_id}"))).await;
    browser.find("#timeline").await;
    assert!(
        !browser.source().await.contains("forged note"),
        "the forged notes were not added"
    );

    // Compliance reads who saw what.
    let compliance = Browser::start().await;
    rig.sign_in(&compliance, &CORA).await;
    compliance.goto(&rig.url("/access-log")).await;
    let log = compliance.text_of("#access-log").await;
    let reveal = log
        .lines()
        .find(|line| line.contains("full contact details"))
        .unwrap_or_else(|| panic!("no reveal in the access log:\n{log}"));
    assert!(
        reveal.contains("carla") && reveal.contains(&case_id),
        "{reveal}"
    );
    assert!(log.contains("case page"), "the views are logged too");
    assert_eq!(
        compliance.accessibility_violations().await,
        Vec::<String>::new(),
        "the access log"
    );
    // A coordinator may not read it.
    assert_eq!(browser.fetch_status("GET", "/access-log", &[]).await, 403);

    let desk_log = rig.desk_log();
    assert!(
        desk_log.contains("signed in"),
        "the desk logged: {desk_log}"
    );
    for patient_data in [
        MOBILE,
        "2125550142",
        EMAIL,
        "Dana",
        "Whitfield",
        "forged note",
    ] {
        assert!(
            !desk_log.contains(patient_data),
            "the desk's log holds {patient_data}"
        );
    }
}
