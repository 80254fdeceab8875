//! A coordinator's day: sign in, take the call task for her Spanish patient,
//! read the script in Spanish, call her from the task, record that she
//! reached her.

use touchpoint_platform::testkit::events::{EMAIL, MOBILE, person};
use touchpoint_proto::v1::{Channel, Language};
use touchpoint_sandbox::voice::DialEnd;

use crate::browser::Browser;
use crate::support::{CARLA, NewPatient, Rig};

/// A Tuesday, 10:00 in New York.
const TUESDAY_MORNING: &str = "2027-01-05T15:00:00Z";
/// The day before, so the welcome call (enrolment + 1 day) is due.
const ENROLLED: &str = "2027-01-04T14:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_claims_her_spanish_patients_call_reads_the_script_and_records_reaching_her()
{
    let mut rig = Rig::start(TUESDAY_MORNING, &[CARLA]).await;
    rig.on_roster(&CARLA).await;
    let case_id = rig
        .open_case(NewPatient {
            key: "ana",
            program: "adherence",
            person: person("Ana", "López", MOBILE, EMAIL),
            language: Language::Es,
            enrolled: ENROLLED,
            channels: &[Channel::Voice, Channel::Sms],
            coordinator: CARLA.id,
        })
        .await;
    let browser = Browser::start().await;
    rig.sign_in(&browser, &CARLA).await;
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the worklist"
    );

    // The welcome call is due: it reaches her worklist (without a reload).
    let row = format!("#worklist tr:has(a[href='/cases/{case_id}'])");
    browser.find(&row).await;
    assert!(browser.text_of(&row).await.contains("Call"));
    browser.click_on(&format!("{row} a[href^='/tasks/']")).await;
    browser.click_on("#claim").await;
    browser.find("#save-outcome").await;
    let text = browser.text_of("#script").await;
    assert!(
        text.contains("¿puedo hablar con Ana López?"),
        "the Spanish script, with her name: {text}"
    );
    assert!(browser.source().await.contains("lang=\"es\""));
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the task page"
    );

    // Click to call: her own phone rings, and once she answers, Ana's.
    let task_shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk-task-page.png");
    std::fs::write(&task_shot, browser.screenshot().await).unwrap_or_else(|e| panic!("{e}"));
    println!("task page screenshot: {}", task_shot.display());
    browser.click_on("#place-call").await;
    // The page it comes back to says so (the task page has a flash of its own
    // before the click: wait for the new words, not for any flash).
    browser
        .wait_for_text("Your phone is ringing: answer it and the patient is called.")
        .await;
    let twilio = &rig.hub.sms;
    let calls = twilio.calls();
    assert_eq!(calls.len(), 1, "one call");
    assert_eq!(calls[0].to, "client:carla", "her own client rings first");
    twilio.pick_up(&calls[0].sid).await;
    let dialled = twilio.calls()[0].dialled.clone();
    assert_eq!(
        dialled.map(|d| d.number),
        Some(MOBILE.to_owned()),
        "then Ana"
    );
    twilio
        .end_dial(&calls[0].sid, DialEnd::Answered { seconds: 95 })
        .await;

    browser
        .click_on("input[name=disposition][value=reached]")
        .await;
    browser
        .type_into("#outcome-note", "Empieza el lunes; sin preguntas.")
        .await;
    browser.click_on("#save-outcome").await;

    // Back on the case page: the completion reaches the timeline and the
    // welcome step reads as answered once the services have caught up.
    browser.find("#timeline").await;
    let done = "Call completed by carla: reached";
    touchpoint_platform::testkit::eventually(
        "the timeline to show the completed call and the plan the answered step",
        crate::browser::WAIT,
        || async {
            browser.goto(&rig.url(&format!("/cases/{case_id}"))).await;
            let page = browser.source().await;
            let answered = browser
                .text_of("tr[data-step=welcome]")
                .await
                .contains("answered");
            (page.contains(done) && answered).then_some(())
        },
    )
    .await;
    let page = browser.source().await;
    assert!(
        page.contains("Empieza el lunes; sin preguntas."),
        "the note"
    );
    assert!(
        page.contains("Call answered; spoke 95 s"),
        "the call's outcome, under her disposition"
    );
    assert!(page.contains("A. L."), "the patient's initials");
    assert!(!page.contains(MOBILE), "no full number without a reveal");
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the case page"
    );
    browser.resize(1280, 2300).await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk-case-page.png");
    std::fs::write(&shot, browser.screenshot().await).unwrap_or_else(|e| panic!("{e}"));
    println!("case page screenshot: {}", shot.display());
}
