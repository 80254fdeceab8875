//! The roster: a supervisor takes Tuesday off a coordinator's shifts, and the
//! next text from her patient no longer reaches her; routing records who made
//! the change. A supervisor of another program cannot change her.

use touchpoint_platform::testkit::{self, events::MOBILE};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{ContactRouted, GetTimelineRequest};

use crate::browser::{Browser, WAIT};
use crate::support::{Account, CARLA, Rig, SAM};

/// A Tuesday, 10:00 in New York.
const NOW: &str = "2027-01-05T15:00:00Z";

/// Rita: supervises the refill program only.
const RITA: Account = Account {
    id: "rita",
    name: "Rita Moreno",
    roles: &["supervisor"],
    programs: &["refill-reminder"],
    locale: "en-US",
};

/// The routing decisions on `case_id`'s timeline, in order.
async fn routed(rig: &Rig, case_id: &str) -> Vec<ContactRouted> {
    let mut cases = rig.hub.cases.clone();
    let entries = cases
        .get_timeline(GetTimelineRequest {
            case_id: case_id.into(),
            kinds: vec![],
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .map(|r| r.into_inner().entries)
        .unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|e| match e.event?.payload? {
            Payload::ContactRouted(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_changes_a_shift_and_the_next_routed_text_follows_it() {
    let mut rig = Rig::start(NOW, &[SAM, RITA, CARLA]).await;
    let case_id = rig.ben_with_carla(NOW).await;
    rig.routing_knows(&case_id).await;
    // On shift around the clock: Ben's text reaches Carla.
    assert_eq!(
        rig.hub.text(MOBILE, "Quick question", "SMroster1").await,
        200
    );
    let first = testkit::eventually("the first text routed", WAIT, || async {
        routed(&rig, &case_id).await.first().cloned()
    })
    .await;
    assert_eq!(
        (first.rule.as_str(), first.coordinator_id.as_str()),
        ("coordinator", "carla")
    );

    // Rita supervises another program: Carla is not hers to change.
    let rita = Browser::start().await;
    rig.sign_in(&rita, &RITA).await;
    assert_eq!(rita.fetch_status("GET", "/roster/carla", &[]).await, 404);

    let browser = Browser::start().await;
    rig.sign_in(&browser, &SAM).await;
    browser.click_on("nav a[href='/roster']").await;
    browser.click_on("#member-carla a").await;
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the roster form"
    );
    // Tuesday (2) off.
    browser
        .execute(
            "document.getElementById('start_2').value = '';
             document.getElementById('end_2').value = '';",
            serde_json::json!([]),
        )
        .await;
    // Her calls ring her desk phone from now on.
    browser
        .type_into("#dial_to", "sip:carla@hub.sip.twilio.com")
        .await;
    browser.click_on("#save-member").await;
    browser.wait_for_text("The roster is changed.").await;
    let carla = rig
        .routing
        .clone()
        .list_coordinators(touchpoint_proto::v1::ListCoordinatorsRequest::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .coordinators
        .into_iter()
        .find(|c| c.coordinator_id == "carla")
        .unwrap_or_else(|| panic!("carla is on the roster"));
    assert_eq!(carla.dial_to, "sip:carla@hub.sip.twilio.com");
    let row = browser.text_of("#member-carla").await;
    assert!(!row.contains("Tue"), "{row}");
    assert!(
        row.contains("Mon") && row.contains("sam"),
        "changed by sam: {row}"
    );
    assert_eq!(
        browser.accessibility_violations().await,
        Vec::<String>::new(),
        "the roster"
    );

    // Ben's next text finds Carla off shift: it goes elsewhere.
    assert_eq!(
        rig.hub.text(MOBILE, "Another question", "SMroster2").await,
        200
    );
    let second = testkit::eventually("the second text routed", WAIT, || async {
        routed(&rig, &case_id).await.get(1).cloned()
    })
    .await;
    assert_ne!(second.coordinator_id, "carla", "{second:?}");
    assert_ne!(second.rule, "coordinator");
}
