//! New work appears on an open worklist without a reload.

use std::time::Instant;

use serde_json::json;
use touchpoint_platform::testkit::{self, events::MOBILE};

use crate::browser::WAIT;
use crate::support::Rig;

/// A Tuesday, 10:00 in New York.
const NOW: &str = "2027-01-05T15:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patients_text_routed_to_her_appears_on_her_open_worklist_without_a_reload() {
    let (rig, case_id, browser) = Rig::carla_and_ben(NOW).await;
    browser.find("#worklist .empty").await;
    // Marks this page: a reload would lose it.
    browser
        .execute("window.stillThisPage = true;", json!([]))
        .await;

    let texted = Instant::now();
    assert_eq!(
        rig.hub
            .text(MOBILE, "Can you call me back about my refill?", "SMlive1")
            .await,
        200
    );
    let row = format!("#worklist tr:has(a[href='/cases/{case_id}'])");
    testkit::eventually("the reply on the open worklist", WAIT, || {
        browser.find_now(&row)
    })
    .await;
    println!(
        "the reply was on the worklist {:?} after the text",
        texted.elapsed()
    );
    assert!(browser.text_of(&row).await.contains("Reply to read"));
    assert_eq!(
        browser
            .execute("return window.stillThisPage === true;", json!([]))
            .await,
        json!(true),
        "the page was not reloaded"
    );
}
