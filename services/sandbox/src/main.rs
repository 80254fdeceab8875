//! The outside providers for local runs, as one process: an SMS and voice
//! provider speaking Twilio's API, a fax provider speaking Phaxio's, an email
//! provider speaking Mailgun's, a print-and-mail provider speaking Lob's and an
//! SMTP server. `touchpoint up` starts it and points dispatch
//! at it. What it takes stays in memory; it logs counts, never a number, an
//! address or a text.
//!
//! Every SMS it takes is reported delivered to the message's status callback
//! within a fraction of a second, every call (the desk's click to call) is
//! picked up and answered for a minute, every email to Mailgun's delivery
//! webhook, and every letter as mailed, in transit and delivered to Lob's
//! webhook (dispatch's callbacks on their default address).
//!
//! Addresses: `TOUCHPOINT_SANDBOX_SMS_ADDR` (default 127.0.0.1:8081),
//! `TOUCHPOINT_SANDBOX_FAX_ADDR` (127.0.0.1:8082),
//! `TOUCHPOINT_SANDBOX_MAILGUN_ADDR` (127.0.0.1:8083),
//! `TOUCHPOINT_SANDBOX_LOB_ADDR` (127.0.0.1:8084),
//! `TOUCHPOINT_SANDBOX_SMTP_ADDR` (127.0.0.1:2525). Mailgun's webhooks go to
//! `TOUCHPOINT_SANDBOX_MAILGUN_DELIVERY_WEBHOOK` and `_COMPLAINT_WEBHOOK`
//! (dispatch's and routing's local addresses by default), Lob's to
//! `TOUCHPOINT_SANDBOX_LOB_WEBHOOK`. Credentials are the development ones in
//! [`touchpoint_sandbox::local`]. The SMTP server offers STARTTLS
//! with a certificate from a development CA made at start. With
//! `TOUCHPOINT_SANDBOX_CA_FILE` set, that CA's certificate is written there
//! before anything listens, and the SMS and fax providers serve HTTPS with a
//! certificate it signed, as the providers themselves do; unset, they serve
//! plain HTTP (for a client that cannot be given the CA).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use touchpoint_platform::tls::DevCa;
use touchpoint_sandbox::Sandbox;
use touchpoint_sandbox::fax::FaxSandbox;
use touchpoint_sandbox::lob::LobSandbox;
use touchpoint_sandbox::local;
use touchpoint_sandbox::mailgun::{MailgunOptions, MailgunSandbox};
use touchpoint_sandbox::smtp::{SmtpOptions, SmtpServer};

fn addr(var: &str, default: &str) -> anyhow::Result<SocketAddr> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .parse()
        .with_context(|| format!("{var}: expected an address such as {default}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sms_addr = addr("TOUCHPOINT_SANDBOX_SMS_ADDR", local::SMS_ADDR)?;
    let fax_addr = addr("TOUCHPOINT_SANDBOX_FAX_ADDR", local::FAX_ADDR)?;
    let smtp_addr = addr("TOUCHPOINT_SANDBOX_SMTP_ADDR", local::SMTP_ADDR)?;
    let mailgun_addr = addr("TOUCHPOINT_SANDBOX_MAILGUN_ADDR", local::MAILGUN_ADDR)?;
    let lob_addr = addr("TOUCHPOINT_SANDBOX_LOB_ADDR", local::LOB_ADDR)?;
    let ca = DevCa::generate()?;
    let identity = ca.issue(&["127.0.0.1", "localhost"])?;
    let https = match std::env::var_os(local::CA_FILE_VAR) {
        Some(path) => {
            std::fs::write(&path, ca.cert_pem()).with_context(|| {
                format!("{}: cannot write the CA certificate", local::CA_FILE_VAR)
            })?;
            Some(&identity)
        }
        None => None,
    };
    let sms = Sandbox::start_on(sms_addr, local::ACCOUNT_SID, local::AUTH_TOKEN, https)
        .await
        .with_context(|| format!("cannot listen on {sms_addr}"))?;
    let fax = FaxSandbox::start_on(
        fax_addr,
        (local::FAX_API_KEY, local::FAX_API_SECRET),
        local::FAX_CALLBACK_TOKEN,
        https,
    )
    .await
    .with_context(|| format!("cannot listen on {fax_addr}"))?;
    let mailgun = MailgunSandbox::start_on(
        mailgun_addr,
        MailgunOptions {
            domain: local::MAILGUN_DOMAIN,
            api_key: local::MAILGUN_API_KEY,
            signing_key: local::MAILGUN_SIGNING_KEY,
            search_delay: Duration::from_secs(1),
        },
        https,
    )
    .await
    .with_context(|| format!("cannot listen on {mailgun_addr}"))?;
    let lob = LobSandbox::start_on(
        lob_addr,
        (local::LOB_API_KEY, local::LOB_WEBHOOK_SECRET),
        https,
    )
    .await
    .with_context(|| format!("cannot listen on {lob_addr}"))?;
    let webhook = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
    lob.webhook(&webhook(
        "TOUCHPOINT_SANDBOX_LOB_WEBHOOK",
        local::LOB_WEBHOOK,
    ));
    let delivery = webhook(
        "TOUCHPOINT_SANDBOX_MAILGUN_DELIVERY_WEBHOOK",
        local::MAILGUN_DELIVERY_WEBHOOK,
    );
    let complaint = webhook(
        "TOUCHPOINT_SANDBOX_MAILGUN_COMPLAINT_WEBHOOK",
        local::MAILGUN_COMPLAINT_WEBHOOK,
    );
    for kind in ["delivered", "permanent_fail", "temporary_fail"] {
        mailgun.webhook(kind, &delivery);
    }
    for kind in ["complained", "unsubscribed"] {
        mailgun.webhook(kind, &complaint);
    }
    let smtp_options = SmtpOptions {
        credentials: Some((local::SMTP_USER.into(), local::SMTP_PASSWORD.into())),
        tls: Some(identity.clone()),
    };
    let smtp = SmtpServer::start_on(smtp_addr, smtp_options)
        .await
        .with_context(|| format!("cannot listen on {smtp_addr}"))?;
    println!(
        "sandbox: SMS at {}, fax at {}, Mailgun at {}, letters at {}, SMTP (STARTTLS) at {smtp_addr}",
        sms.url(),
        fax.url(),
        mailgun.url(),
        lob.url()
    );
    let mut seen = (0, 0, 0, 0, 0, 0);
    let mut mailed = 0;
    let mut posted = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut reported = 0;
    let mut answered = 0;
    let mut deliver = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = deliver.tick() => {
                // Every message reaches its handset: reported delivered to its
                // callback, as the provider reports.
                sms.deliver_new(&mut reported).await;
                mailgun.deliver_new(&mut mailed).await;
                lob.deliver_new(&mut posted).await;
                // Every call is picked up and answered.
                sms.answer_new(&mut answered).await;
            }
            _ = tick.tick() => {
                let now = (
                    sms.received().len(),
                    fax.received().len(),
                    mailgun.received().len(),
                    smtp.mails().len(),
                    sms.calls().len(),
                    lob.received().len(),
                );
                if now != seen {
                    println!(
                        "sandbox: took {} SMS, {} faxes, {} emails through Mailgun, {} over SMTP, {} calls, {} letters",
                        now.0, now.1, now.2, now.3, now.4, now.5
                    );
                    seen = now;
                }
            }
        }
    }
    Ok(())
}
