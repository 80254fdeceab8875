//! Working a task beyond its outcome: promising a callback inside the
//! patient's window, and handing the task to the case's navigator.

use touchpoint_platform::testkit::events::{EMAIL, MOBILE, person};
use touchpoint_proto::v1::{AssignCoordinatorRequest, Channel, Language, ListWorklistRequest};
use touchpoint_tests::fixtures::meta;

use crate::browser::Browser;
use crate::support::{Account, CARLA, NewPatient, Rig};

/// A Tuesday, 10:00 in New York.
const NOW: &str = "2027-01-05T15:00:00Z";

/// Nina: the adherence program's navigator.
const NINA: Account = Account {
    id: "nina",
    name: "Nina Brandt",
    roles: &["navigator"],
    programs: &["adherence"],
    locale: "en-US",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_promises_a_callback_inside_the_window_and_hands_the_reply_to_the_navigator()
{
    let mut rig = Rig::start(NOW, &[CARLA, NINA]).await;
    rig.on_roster(&CARLA).await;
    rig.on_roster(&NINA).await;
    let case_id = rig
        .open_case(NewPatient {
            key: "eva",
            program: "adherence",
            person: person("Eva", "Marsh", MOBILE, EMAIL),
            language: Language::En,
            enrolled: "2027-01-05T14:00:00Z",
            channels: &[Channel::Sms, Channel::Voice],
            coordinator: CARLA.id,
        })
        .await;
    rig.hub
        .cases
        .assign_coordinator(AssignCoordinatorRequest {
            meta: meta("assign-eva-navigator"),
            case_id: case_id.clone(),
            coordinator_id: CARLA.id.into(),
            navigator_id: NINA.id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let browser = Browser::start().await;
    rig.sign_in(&browser, &CARLA).await;
    // Routing knows the case and its team by now (the sign-in took longer
    // than its projection): the patient's text reaches her coordinator.
    assert_eq!(
        rig.hub
            .text(MOBILE, "Can someone call me about my insurance?", "SMeva1")
            .await,
        200
    );
    let reply = format!("#worklist tr:has(a[href='/cases/{case_id}']) a[href^='/tasks/']");
    browser.click_on(&reply).await;
    browser.click_on("#claim").await;
    browser.find("#callback-at").await;
    let task_page = browser.current_url().await;

    // 21:30 in New York is after the patient's window closes (20:00).
    browser
        .execute(
            "document.getElementById('callback-at').value = '2027-01-05T21:30';",
            serde_json::json!([]),
        )
        .await;
    browser.click_on("#schedule-callback").await;
    browser.wait_for_text("due_at: outside the patient").await;
    browser.goto(&task_page).await;
    browser.find("#callback-at").await;
    browser
        .execute(
            "document.getElementById('callback-at').value = '2027-01-05T16:00';",
            serde_json::json!([]),
        )
        .await;
    browser.click_on("#schedule-callback").await;
    browser
        .wait_for_text("The callback is on your worklist.")
        .await;

    browser.click_on("input[name=to][value=navigator]").await;
    browser
        .type_into("#transfer-note", "Insurance question: over to Nina.")
        .await;
    browser.click_on("#transfer").await;
    browser.wait_for_text("The task was handed on.").await;
    let list = browser.text_of("#worklist").await;
    assert!(list.contains("Callback"), "her promised callback: {list}");
    assert!(
        !list.contains("Reply to read"),
        "the reply left her worklist: {list}"
    );

    let ninas = rig
        .routing
        .list_worklist(ListWorklistRequest {
            coordinator_id: NINA.id.into(),
            limit: 50,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .tasks;
    assert!(
        ninas.iter().any(|t| t.case_id == case_id),
        "the reply waits on the navigator's worklist"
    );
    browser.goto(&rig.url(&format!("/cases/{case_id}"))).await;
    browser
        .wait_for_text("Note by carla: Insurance question: over to Nina.")
        .await;
}
