//! Writing to a patient from the case page: the message goes out through
//! dispatch like any attempt, exactly once, and after the patient's STOP the
//! same action is refused with the reason.

use serde_json::json;
use touchpoint_platform::testkit::{self, events::MOBILE};

use crate::browser::WAIT;
use crate::support::Rig;

/// A Tuesday, 10:00 in New York.
const NOW: &str = "2027-01-05T15:00:00Z";
const REPLY: &str = "Hi Ben, your refill is ready at the pharmacy.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_the_sms_provider_once_and_after_stop_is_refused_with_the_reason() {
    let (rig, case_id, browser) = Rig::carla_and_ben(NOW).await;
    let case_page = rig.url(&format!("/cases/{case_id}"));
    browser.goto(&case_page).await;
    browser.type_into("#reply-text", REPLY).await;
    // What the form will send, to send it again as a double submit would.
    let fields = browser
        .execute(
            "const f = document.getElementById('reply');
             return Object.fromEntries(new FormData(f).entries());",
            json!([]),
        )
        .await;
    browser.click_on("#send-reply").await;
    browser.wait_for_text("Your message went out.").await;

    let replay: Vec<(String, String)> = fields
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let replay: Vec<(&str, &str)> = replay
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let again = browser
        .fetch_status("POST", &format!("/cases/{case_id}/message"), &replay)
        .await;
    assert_eq!(
        again, 0,
        "the replay is answered like the first: a redirect"
    );
    let sent: Vec<_> = rig
        .hub
        .sms
        .received()
        .into_iter()
        .filter(|m| m.body == REPLY)
        .collect();
    assert_eq!(sent.len(), 1, "the reply reached the provider exactly once");
    assert_eq!(sent[0].to, MOBILE);

    // The patient texts STOP; once dispatch has heard it, a reply is refused.
    assert_eq!(rig.hub.text(MOBILE, "STOP", "SMstop1").await, 200);
    let db = sqlx::PgPool::connect(&rig.hub.database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    testkit::eventually("dispatch to hear the STOP", WAIT, || {
        let db = db.clone();
        async move {
            let opted: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM dispatch.opted_out_destinations WHERE channel = 'CHANNEL_SMS'",
            )
            .fetch_one(&db)
            .await
            .unwrap_or(0);
            (opted > 0).then_some(())
        }
    })
    .await;
    browser.goto(&case_page).await;
    browser
        .type_into("#reply-text", "Are you still there?")
        .await;
    browser.click_on("#send-reply").await;
    browser
        .wait_for_text("Your message was not sent: the patient opted out.")
        .await;
    assert!(
        !rig.hub
            .sms
            .received()
            .iter()
            .any(|m| m.body == "Are you still there?"),
        "nothing reached the provider after the STOP"
    );
    let log = rig.desk_log();
    for patient_data in [REPLY, "Are you still there?", MOBILE] {
        assert!(
            !log.contains(patient_data),
            "the desk's log holds {patient_data}"
        );
    }
}
