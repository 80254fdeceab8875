//! A real browser for the desk's tests: Debian's Chromium, headless, driven
//! through ChromeDriver's W3C WebDriver API over HTTP. Each [`Browser`] has its
//! own ChromeDriver, its own fresh profile, and stops both when dropped.
//!
//! Panics name what failed: these are test fixtures.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use touchpoint_platform::http_client::{Exchange, HttpClient};
use touchpoint_platform::testkit;

/// The key WebDriver returns an element's reference under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait for a page or element lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Chromium's flags for this closed network: headless, and nothing that
/// reaches out (updates, sync, QUIC) and stalls.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
];

/// A headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    http: HttpClient,
    base: String,
    session: String,
    _driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session quits Chromium; killing ChromeDriver alone would
        // leave the browser running. Drop cannot await, so this is plain
        // blocking HTTP, with a deadline.
        let quit = || -> std::io::Result<()> {
            use std::io::{Read as _, Write as _};
            let addr = self.base.trim_start_matches("http://");
            let mut stream = std::net::TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            )?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            Ok(())
        };
        let _ = quit();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A page element.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a browser with a fresh profile.
    pub async fn start() -> Self {
        let port = testkit::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver did not start (deploy/setup.sh installs it): {e}")
            });
        let http = HttpClient::new(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        let base = format!("http://127.0.0.1:{port}");
        testkit::eventually("chromedriver to answer", WAIT, || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                match http.send(Method::GET, &url, &[], Vec::new()).await {
                    Exchange::Answered { status, .. } if status.is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
        let profile =
            std::env::temp_dir().join(format!("touchpoint-chromium-{}", uuid::Uuid::now_v7()));
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            }}
        });
        let answer = call(
            &http,
            Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await;
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Self {
            http,
            base,
            session,
            _driver: driver,
            profile,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        call(&self.http, Method::POST, &self.url(path), Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        call(&self.http, Method::GET, &self.url(path), None).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The URL shown.
    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML as it is now.
    pub async fn source(&self) -> String {
        self.get("/source")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, if there is one now.
    pub async fn find_now(&self, css: &str) -> Option<Element> {
        let answer = try_call(
            &self.http,
            Method::POST,
            &self.url("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .ok()?;
        answer[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(element) = self.find_now(css).await {
                return element;
            }
            if tokio::time::Instant::now() >= deadline {
                let page: String = self.source().await.chars().take(3000).collect();
                panic!(
                    "no element {css} after {WAIT:?} at {}:\n{page}",
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Clicks the element matching `css`.
    pub async fn click_on(&self, css: &str) {
        let element = self.find(css).await;
        self.click(&element).await;
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// The visible text of the element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.get(&format!("/element/{}/text", element.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` in the page (WebDriver's synchronous execute).
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs `script`, which calls its last argument when done.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// Resizes the window (a tall one shows a whole page in a screenshot).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = self.get("/screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the screenshot is not base64: {e}"))
    }

    /// Waits until the page's text holds `needle`.
    pub async fn wait_for_text(&self, needle: &str) {
        testkit::eventually(&format!("the page to say {needle:?}"), WAIT, || async {
            self.source().await.contains(needle).then_some(())
        })
        .await;
    }
}

async fn try_call(
    http: &HttpClient,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, Value> {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    match http
        .send(method, url, &[("content-type", "application/json")], bytes)
        .await
    {
        Exchange::Answered { status, body } => {
            let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if status.is_success() {
                Ok(parsed["value"].clone())
            } else {
                Err(parsed["value"].clone())
            }
        }
        other => panic!("chromedriver did not answer {url}: {other:?}"),
    }
}

async fn call(http: &HttpClient, method: Method, url: &str, body: Option<Value>) -> Value {
    try_call(http, method, url, body)
        .await
        .unwrap_or_else(|error| panic!("WebDriver refused {url}: {error}"))
}

impl Browser {
    /// The serious and critical accessibility violations axe-core finds on
    /// the page shown (rule ids), with the page's own CSP left in force.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = crate::support::browser_dir().join("node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&axe)
            .unwrap_or_else(|e| panic!("{} (deploy/setup.sh installs it): {e}", axe.display()));
        self.execute(&source, json!([])).await;
        let found = self
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(
                   r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))
                 ), e => done(['axe failed: ' + e]));",
                json!([]),
            )
            .await;
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the page's own `fetch` gets for `GET path` (a download): status,
    /// content type and body.
    pub async fn download(&self, path: &str) -> (u16, String, String) {
        let got = self
            .execute_async(
                "const [path, done] = arguments;
                 fetch(path, { credentials: 'same-origin' }).then(r => r.text().then(
                   body => done([r.status, r.headers.get('content-type'), body])));",
                json!([path]),
            )
            .await;
        let text = |i: usize| got[i].as_str().unwrap_or_default().to_owned();
        let status = got[0]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("fetch gave no status: {got}"));
        (status, text(1), text(2))
    }

    /// The HTTP status the page's own `fetch` gets for `method path` with
    /// `form` as its body, sent with the session's cookie.
    pub async fn fetch_status(&self, method: &str, path: &str, form: &[(&str, &str)]) -> u16 {
        let body: serde_json::Map<String, Value> = form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let status = self
            .execute_async(
                "const [method, path, form, done] = arguments;
                 const init = { method, credentials: 'same-origin', redirect: 'manual' };
                 if (method !== 'GET') { init.body = new URLSearchParams(form); }
                 fetch(path, init).then(r => done(r.status), e => done(-1));",
                json!([method, path, body]),
            )
            .await;
        status
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("fetch gave no status: {status}"))
    }
}
