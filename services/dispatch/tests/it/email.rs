//! Email through lettre's real SMTP client, against an SMTP server the test
//! starts: written in the patient's language with a subject, a text and an HTML
//! part, sent once, over a connection STARTTLS encrypted; a 4xx is retried, a
//! 5xx fails for good; a relay that cannot encrypt as required gets nothing.

use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use touchpoint_dispatch::SmtpRelay;
use touchpoint_dispatch::providers::email::{MailTls, StartTls, Unsubscribe};
use touchpoint_platform::tls::DevCa;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, GetAttemptRequest, Language};
use touchpoint_sandbox::smtp::{SmtpOptions, SmtpServer};

const USER: &str = "dispatch";
const PASSWORD: &str = "relay-password";

/// Dispatch sending through `server`, trusting `authority` beside the public
/// roots, with TLS as `mode` says.
async fn world_with(
    server: &SmtpServer,
    authority: &DevCa,
    mode: StartTls,
    adjust: impl FnOnce(&mut touchpoint_dispatch::Config),
) -> World {
    let addr = server.addr();
    World::running_with(NOW, |c| {
        c.smtp = Some(SmtpRelay {
            host: addr.ip().to_string(),
            port: addr.port(),
            from: "Care Team <care@hub.example>".into(),
            credentials: Some((USER.into(), PASSWORD.into())),
            rate: None,
            unsubscribe: Unsubscribe {
                url: "http://127.0.0.1:9/unsubscribe/email".into(),
                key: "unsubscribe-key".into(),
            },
            tls: MailTls {
                mode,
                extra_roots: Some(authority.cert_pem().into_bytes()),
            },
        });
        adjust(c);
    })
    .await
}

fn authority() -> DevCa {
    DevCa::generate().unwrap_or_else(|e| panic!("{e}"))
}

/// A relay that takes AUTH only after STARTTLS, with a certificate for
/// 127.0.0.1 signed by `authority`; without one, a relay that offers no TLS.
async fn server(authority: Option<&DevCa>) -> SmtpServer {
    let tls = authority.map(|ca| {
        ca.issue(&["127.0.0.1"])
            .unwrap_or_else(|e| panic!("certificate: {e}"))
    });
    SmtpServer::start(SmtpOptions {
        credentials: Some((USER.into(), PASSWORD.into())),
        tls,
    })
    .await
    .unwrap_or_else(|e| panic!("smtp server: {e}"))
}

/// The decoded body of the MIME part of `content_type` in `data`.
fn part(data: &str, content_type: &str) -> String {
    let start = data
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("no {content_type} part"));
    let part = &data[start..];
    let (headers, body) = part.split_once("\r\n\r\n").unwrap_or_default();
    let body = body.split("\r\n--").next().unwrap_or_default();
    if headers.contains("Content-Transfer-Encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8(STANDARD.decode(joined).unwrap_or_default()).unwrap_or_default()
    } else if headers.contains("Content-Transfer-Encoding: quoted-printable") {
        quoted_printable(body)
    } else {
        body.to_owned()
    }
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_goes_out_once_encrypted_in_spanish_with_a_subject_a_text_and_an_html_part() {
    let ca = authority();
    let smtp = server(Some(&ca)).await;
    let world = world_with(&smtp, &ca, StartTls::Opportunistic, |_| {}).await;
    let outcomes = world.outcomes();
    world.open_case("case-mail", &[Channel::Email]).await;
    let request = requested("case-mail", Channel::Email);
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    let Some(Payload::AttemptSent(sent)) = outcomes.first(&id).await.payload else {
        panic!("not sent");
    };
    assert_eq!(sent.provider, "smtp");
    assert_eq!(sent.provider_message_id, format!("<{id}@touchpoint>"));
    assert_eq!(sent.language(), Language::Es);

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "sent once");
    let mail = &mails[0];
    assert!(mail.encrypted, "STARTTLS was offered, so it was used");
    assert_eq!(mail.to, vec!["ana@example.com".to_owned()]);
    assert_eq!(mail.from, "care@hub.example");
    assert!(
        mail.data
            .contains(&format!("Message-ID: <{id}@touchpoint>"))
    );
    assert!(
        mail.data
            .contains("Subject: Le damos la bienvenida a Adherence support"),
        "the template's subject"
    );
    assert!(mail.data.contains("multipart/alternative"));
    // A one-click unsubscribe (RFC 8058) that names the case, not the address.
    let sig = touchpoint_platform::signature::unsubscribe::sign(
        "unsubscribe-key",
        "case-mail",
        "ana@example.com",
    );
    assert!(
        mail.data.contains(&format!(
            "List-Unsubscribe: <http://127.0.0.1:9/unsubscribe/email?case=case-mail&sig={sig}>"
        )),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    );
    let text = part(&mail.data, "text/plain");
    assert!(text.starts_with("Estimado/a Ana Ruiz:"), "{text}");
    assert!(text.contains("Su coordinador de atención"), "{text}");
    let html = part(&mail.data, "text/html");
    assert!(html.contains("<p>Estimado/a Ana Ruiz:</p>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferral_is_retried_and_a_rejection_fails_for_good() {
    let ca = authority();
    let smtp = server(Some(&ca)).await;
    smtp.reply_next(451);
    let world = world_with(&smtp, &ca, StartTls::Opportunistic, |_| {}).await;
    let outcomes = world.outcomes();
    world.open_case("case-451", &[Channel::Email]).await;
    let deferred = requested("case-451", Channel::Email);
    let deferred_id = attempt_id(&deferred);
    world.publish(&[(Stream::Outreach, deferred)]).await;
    let sent = outcomes.first(&deferred_id).await;
    assert!(
        matches!(sent.payload, Some(Payload::AttemptSent(_))),
        "{sent:?}"
    );
    assert_eq!(smtp.mails().len(), 1, "taken once, on the second try");
    let tries = world
        .client
        .clone()
        .get_attempt(GetAttemptRequest {
            attempt_id: deferred_id,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .tries;
    assert_eq!(tries, 2);

    smtp.reply_next(550);
    world.open_case("case-550", &[Channel::Email]).await;
    let rejected = requested("case-550", Channel::Email);
    let rejected_id = attempt_id(&rejected);
    world.publish(&[(Stream::Outreach, rejected)]).await;
    match outcomes.first(&rejected_id).await.payload {
        Some(Payload::AttemptFailed(f)) => {
            assert!(f.permanent);
            assert_eq!(f.provider_code, "smtp_550");
        }
        other => panic!("not failed: {other:?}"),
    }
    assert_eq!(smtp.mails().len(), 1, "nothing more taken");
}

/// Requests one email for a new case and returns the outcome event's failure.
async fn failed_email(world: &World, case: &str) -> touchpoint_proto::v1::AttemptFailed {
    let outcomes = world.outcomes();
    world.open_case(case, &[Channel::Email]).await;
    let request = requested(case, Channel::Email);
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    match outcomes.first(&id).await.payload {
        Some(Payload::AttemptFailed(f)) => f,
        other => panic!("not failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_certificate_does_not_verify_gets_nothing_not_even_in_clear() {
    let (trusted, stranger) = (authority(), authority());
    let smtp = server(Some(&stranger)).await;
    let world = world_with(&smtp, &trusted, StartTls::Opportunistic, |c| {
        c.sender.max_tries = 2;
    })
    .await;
    let failed = failed_email(&world, "case-untrusted").await;
    assert!(!failed.permanent, "{failed:?}");
    assert_eq!(failed.provider_code, "tls");
    assert!(smtp.mails().is_empty(), "nothing handed over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_sends_nothing_to_a_relay_without_starttls() {
    let ca = authority();
    let smtp = server(None).await;
    let world = world_with(&smtp, &ca, StartTls::Required, |c| {
        c.sender.max_tries = 2;
    })
    .await;
    let failed = failed_email(&world, "case-cleartext").await;
    assert!(!failed.permanent, "{failed:?}");
    assert_eq!(failed.provider_code, "connect");
    assert!(smtp.mails().is_empty(), "nothing handed over");
}
